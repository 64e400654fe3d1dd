// The two wrapped objects, Connection and Domain, and the state they share.
#pragma once

#include "common.h"

#include <atomic>
#include <mutex>
#include <set>
#include <unordered_set>
#include <vector>

namespace lv {

// A JS callback reached from the libvirt event thread.
struct CallbackReg {
  explicit CallbackReg(Napi::ThreadSafeFunction fn) : tsfn(std::move(fn)) {}
  ~CallbackReg() { Release(); }
  // Idempotent; safe from any thread. After it, the TSFN no longer keeps
  // Node alive.
  void Release() {
    if (!released.exchange(true)) tsfn.Release();
  }
  Napi::ThreadSafeFunction tsfn;
  std::atomic<bool> released{false};
};

// One virDomainPtr held by a Domain object; null once freed (free(), the
// connection's close(), or the finalizer). Touched on the JS thread only.
struct DomainHandle {
  virDomainPtr dom = nullptr;
};

// What a Connection and its Domains share.
struct ConnState {
  virConnectPtr conn = nullptr;
  // Set on the JS thread by close(); from then on calls reject.
  std::atomic<bool> closed{false};
  // JS thread only: live domain handles, freed by close().
  std::unordered_set<DomainHandle*> domains;

  // Guards the registrations below (changed on pool threads).
  std::mutex mu;
  std::set<int> lifecycleIds;            // owned by libvirt (freed by its freecb)
  std::unique_ptr<CallbackReg> closeReg;  // owned here (see connection.cc)
};

class Connection : public Napi::ObjectWrap<Connection> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Open(const Napi::CallbackInfo& info);
  explicit Connection(const Napi::CallbackInfo& info);
  ~Connection() override;

  std::shared_ptr<ConnState> state() const { return st_; }

 private:
  // Takes a reference for a call; empty + rejected promise when closed.
  virConnectPtr Acquire();
  // Detaches domains and marks closed (JS thread); returns what close must free.
  std::vector<virDomainPtr> Detach();
  // Deregisters callbacks and drops the connection's own reference (any thread).
  static int CloseNow(const std::shared_ptr<ConnState>& st, std::vector<virDomainPtr> doms);

  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);
  Napi::Value IsAlive(const Napi::CallbackInfo& info);
  Napi::Value GetURI(const Napi::CallbackInfo& info);
  Napi::Value GetHostname(const Napi::CallbackInfo& info);
  Napi::Value GetNodeInfo(const Napi::CallbackInfo& info);
  Napi::Value GetNodeMemoryStats(const Napi::CallbackInfo& info);
  Napi::Value GetCapabilities(const Napi::CallbackInfo& info);
  Napi::Value GetLibVersion(const Napi::CallbackInfo& info);
  Napi::Value GetVersion(const Napi::CallbackInfo& info);
  Napi::Value ListAllDomains(const Napi::CallbackInfo& info);
  Napi::Value LookupDomainByName(const Napi::CallbackInfo& info);
  Napi::Value LookupDomainByUUIDString(const Napi::CallbackInfo& info);
  Napi::Value DefineXML(const Napi::CallbackInfo& info);
  Napi::Value CreateXML(const Napi::CallbackInfo& info);
  Napi::Value SetKeepAlive(const Napi::CallbackInfo& info);
  Napi::Value RegisterCloseCallback(const Napi::CallbackInfo& info);
  Napi::Value UnregisterCloseCallback(const Napi::CallbackInfo& info);
  Napi::Value RegisterLifecycleEvents(const Napi::CallbackInfo& info);
  Napi::Value DeregisterEvent(const Napi::CallbackInfo& info);

  // Runs fn(conn) on a pool thread holding a reference for the call.
  template <typename R>
  Napi::Value Call(Napi::Env env, std::function<R(virConnectPtr)> fn, typename Job<R>::Done done);

  std::shared_ptr<ConnState> st_;
};

class Domain : public Napi::ObjectWrap<Domain> {
 public:
  static Napi::Function Init(Napi::Env env);
  // A new Domain object owning dom (ownership passes even on failure).
  static Napi::Value Wrap(Napi::Env env, const std::shared_ptr<ConnState>& st, DomPtr dom);
  explicit Domain(const Napi::CallbackInfo& info);
  ~Domain() override;

 private:
  template <typename R>
  Napi::Value Call(Napi::Env env, std::function<R(virDomainPtr)> fn, typename Job<R>::Done done);
  // An int-returning call with an optional flags argument at index 0.
  Napi::Value Simple(const Napi::CallbackInfo& info, std::function<int(virDomainPtr, unsigned int)> fn,
                     typename Job<int>::Done done = Undef);
  void FreeHandle();

  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value GetName(const Napi::CallbackInfo& info);
  Napi::Value GetUUIDString(const Napi::CallbackInfo& info);
  Napi::Value GetID(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value GetInfo(const Napi::CallbackInfo& info);
  Napi::Value GetXMLDesc(const Napi::CallbackInfo& info);
  Napi::Value IsActive(const Napi::CallbackInfo& info);
  Napi::Value IsPersistent(const Napi::CallbackInfo& info);
  Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value CreateWithFlags(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value ShutdownFlags(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value DestroyFlags(const Napi::CallbackInfo& info);
  Napi::Value Reboot(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Suspend(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value ManagedSave(const Napi::CallbackInfo& info);
  Napi::Value HasManagedSaveImage(const Napi::CallbackInfo& info);
  Napi::Value ManagedSaveRemove(const Napi::CallbackInfo& info);
  Napi::Value Undefine(const Napi::CallbackInfo& info);
  Napi::Value UndefineFlags(const Napi::CallbackInfo& info);
  Napi::Value AttachDeviceFlags(const Napi::CallbackInfo& info);
  Napi::Value DetachDeviceFlags(const Napi::CallbackInfo& info);
  Napi::Value BlockResize(const Napi::CallbackInfo& info);
  Napi::Value QemuMonitorCommand(const Napi::CallbackInfo& info);
  Napi::Value SnapshotCreateXML(const Napi::CallbackInfo& info);
  Napi::Value MigrateToURI3(const Napi::CallbackInfo& info);
  Napi::Value AbortJob(const Napi::CallbackInfo& info);
  Napi::Value GetJobInfo(const Napi::CallbackInfo& info);
  Napi::Value GetJobStats(const Napi::CallbackInfo& info);

  std::shared_ptr<ConnState> st_;
  DomainHandle handle_;
};

}  // namespace lv
