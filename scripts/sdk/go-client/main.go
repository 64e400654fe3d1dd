// A novamesh client in Go, on code generated from the protos (docs/sdk.md).
//
//	go run . ADDRESS TOKEN IMAGE_ID [FLAVOR]
//
// The controller is reached over TLS, its certificate verified with the CA
// in the file NOVAMESH_TLS_CA names (default: the system's CAs); with
// NOVAMESH_PLAINTEXT=1 without TLS (a controller run with --plaintext).
//
// Creates a server, waits on its operation until the server is ACTIVE, then
// sends a CreateServer with an empty name and prints the field that the
// error's google.rpc.BadRequest names. Exits non-zero when something is not
// as expected.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	computev1 "github.com/novamesh/novamesh/gen/go/novamesh/compute/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 4 {
		return fmt.Errorf("usage: %s ADDRESS TOKEN IMAGE_ID [FLAVOR]", os.Args[0])
	}
	address, token, imageID := os.Args[1], os.Args[2], os.Args[3]
	flavor := "m1.tiny"
	if len(os.Args) > 4 {
		flavor = os.Args[4]
	}

	security := grpc.WithInsecure()
	switch os.Getenv("NOVAMESH_PLAINTEXT") {
	case "1", "true", "yes":
	default:
		creds := credentials.NewClientTLSFromCert(nil, "")
		if ca := os.Getenv("NOVAMESH_TLS_CA"); ca != "" {
			fromFile, err := credentials.NewClientTLSFromFile(ca, "")
			if err != nil {
				return fmt.Errorf("NOVAMESH_TLS_CA: %w", err)
			}
			creds = fromFile
		}
		security = grpc.WithTransportCredentials(creds)
	}
	conn, err := grpc.Dial(address, security)
	if err != nil {
		return err
	}
	defer conn.Close()
	servers := computev1.NewServerServiceClient(conn)
	operations := computev1.NewOperationServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)

	// Create a server; the call returns at once with the server in BUILD and
	// the operation that follows the build.
	created, err := servers.CreateServer(ctx, &computev1.CreateServerRequest{
		Name:      "sdk-go",
		FlavorId:  flavor,
		ImageId:   imageID,
		RequestId: fmt.Sprintf("sdk-go-%d", time.Now().UnixNano()),
	})
	if err != nil {
		return fmt.Errorf("CreateServer: %w", err)
	}
	serverID, op := created.GetServer().GetId(), created.GetOperation()
	fmt.Println("created", serverID, created.GetServer().GetStatus())
	fmt.Println("operation", op.GetName())

	// Wait on the operation (each WaitOperation call waits up to 10 s).
	for !op.GetDone() {
		res, err := operations.WaitOperation(ctx, &computev1.WaitOperationRequest{Name: op.GetName(), TimeoutSeconds: 10})
		if err != nil {
			return fmt.Errorf("WaitOperation: %w", err)
		}
		op = res.GetOperation()
	}
	fmt.Println("operation", op.GetState())
	if op.GetState() != computev1.OperationState_OPERATION_STATE_SUCCEEDED {
		return fmt.Errorf("operation failed: %d %s", op.GetError().GetCode(), op.GetError().GetMessage())
	}

	got, err := servers.GetServer(ctx, &computev1.GetServerRequest{Id: serverID})
	if err != nil {
		return fmt.Errorf("GetServer: %w", err)
	}
	server := got.GetServer()
	fmt.Println("server", server.GetId(), server.GetStatus(), "on", server.GetHost())
	if server.GetStatus() != computev1.ServerStatus_SERVER_STATUS_ACTIVE {
		return fmt.Errorf("server is %s, not ACTIVE", server.GetStatus())
	}

	// A bad request: status.FromError decodes the google.rpc.Status from the
	// error's trailers; its details hold an ErrorInfo and a BadRequest naming
	// the field.
	_, err = servers.CreateServer(ctx, &computev1.CreateServerRequest{Name: "", FlavorId: flavor, ImageId: imageID})
	if err == nil {
		return fmt.Errorf("CreateServer with an empty name succeeded")
	}
	st, _ := status.FromError(err)
	fmt.Println("error", st.Code(), st.Message())
	named := false
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			fmt.Println("error info", d.GetReason(), d.GetDomain())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Printf("bad request field %s: %s\n", v.GetField(), v.GetDescription())
				named = named || v.GetField() == "name"
			}
		}
	}
	if st.Code() != codes.InvalidArgument || !named {
		return fmt.Errorf("expected INVALID_ARGUMENT naming the field name")
	}
	return nil
}
