import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { testNetwork, testPort } from "../test-ports.js";
import { dnsmasqArgs, hostsFile, optsFile } from "./dhcp.js";
import { dhcpNames } from "./naming.js";

describe("dnsmasq configuration", () => {
  const net = testNetwork(7);
  const files = { dir: "/s", pid: "/s/pid", hosts: "/s/hosts", opts: "/s/opts", leases: "/s/leases", log: "/s/log" };

  test("the hosts file has one MAC,address line per fixed IP of a DHCP subnet", () => {
    const a = testPort(net, 10);
    const b = testPort(net, 11, { fixedIps: [{ subnetId: net.subnets[0]!.id, address: "10.7.0.11" }, { subnetId: "elsewhere", address: "10.8.0.1" }] });
    assert.equal(hostsFile(net, [a, b]), `${a.mac},10.7.0.10\n${b.mac},10.7.0.11\n`);
  });

  test("static-only ranges, unknown clients ignored, no DNS service, pid and lease files", () => {
    const args = dnsmasqArgs(net, dhcpNames("ab", net.id), files, 600);
    assert.ok(args.includes("--dhcp-range=set:s0,10.7.0.0,static,255.255.255.0,600s"));
    for (const a of ["--dhcp-ignore=tag:!known", "--port=0", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=/s/pid", "--dhcp-leasefile=/s/leases", "--dhcp-hostsfile=/s/hosts"]) {
      assert.ok(args.includes(a), a);
    }
  });

  test("options: router, DNS servers, MTU; classless routes carry the default route too", () => {
    assert.equal(optsFile(net), "tag:s0,option:router,10.7.0.1\ntag:s0,option:dns-server,192.0.2.53\ntag:s0,option:mtu,1450\n");
    const subnet = { ...net.subnets[0]!, gatewayIp: null, dnsServers: [], hostRoutes: [] };
    assert.equal(optsFile({ ...net, subnets: [subnet] }), "tag:s0,option:router\ntag:s0,option:dns-server\ntag:s0,option:mtu,1450\n", "an isolated subnet gets no router");
    const routed = { ...net.subnets[0]!, hostRoutes: [{ destination: "169.254.169.254/32", nexthop: "10.7.0.5" }] };
    assert.match(optsFile({ ...net, subnets: [routed] }), /option:classless-static-route,169\.254\.169\.254\/32,10\.7\.0\.5,0\.0\.0\.0\/0,10\.7\.0\.1\n/);
  });

  test("a network without a DHCP port or DHCP subnet serves nothing", () => {
    assert.equal(optsFile({ ...net, dhcpPort: null }), "");
    assert.ok(!dnsmasqArgs({ ...net, subnets: [{ ...net.subnets[0]!, dhcp: false }] }, dhcpNames("ab", net.id), files, 600).some((a) => a.startsWith("--dhcp-range")));
  });
});
