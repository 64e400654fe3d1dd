// Connection: a virConnectPtr, its lifecycle-event and close callbacks.
#include "objects.h"

#include <cstring>

namespace lv {

namespace {

LvError ClosedError() { return BindingError(VIR_ERR_INVALID_CONN, "connection is closed"); }

// ---- callbacks called by libvirt on its event thread ----------------------

struct LifecycleEvent {
  std::string name, uuid;
  int event, detail;
};

void CallLifecycle(Napi::Env env, Napi::Function fn, LifecycleEvent* ev) {
  std::unique_ptr<LifecycleEvent> owned(ev);
  if (env == nullptr || fn.IsEmpty()) return;
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("domainName", ev->name);
  obj.Set("domainUUID", ev->uuid);
  obj.Set("event", ev->event);
  obj.Set("detail", ev->detail);
  try {
    fn.Call({obj});
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();  // surfaces as an uncaught exception
  }
}

int OnLifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  auto* reg = static_cast<CallbackReg*>(opaque);
  auto* ev = new LifecycleEvent{};
  const char* name = virDomainGetName(dom);
  ev->name = name != nullptr ? name : "";
  char uuid[VIR_UUID_STRING_BUFLEN] = {0};
  if (virDomainGetUUIDString(dom, uuid) == 0) ev->uuid = uuid;
  ev->event = event;
  ev->detail = detail;
  if (reg->released.load() || reg->tsfn.NonBlockingCall(ev, CallLifecycle) != napi_ok) delete ev;
  return 0;
}

// libvirt's freecb of a lifecycle registration: it owns the registration
// from a successful register until this is called.
void FreeLifecycleReg(void* opaque) {
  auto* reg = static_cast<CallbackReg*>(opaque);
  reg->Release();
  delete reg;
}

void CallClose(Napi::Env env, Napi::Function fn, int* reason) {
  std::unique_ptr<int> owned(reason);
  if (env == nullptr || fn.IsEmpty()) return;
  try {
    fn.Call({Napi::Number::New(env, *reason)});
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  }
}

void OnClose(virConnectPtr, int reason, void* opaque) {
  auto* reg = static_cast<CallbackReg*>(opaque);
  auto* r = new int(reason);
  if (reg->released.load() || reg->tsfn.NonBlockingCall(r, CallClose) != napi_ok) delete r;
}

// The close registration stays owned by ConnState: drivers without close
// callbacks (test, qemu:///embed) accept the registration and never call
// freecb, so the binding releases it itself after unregistering.
void FreeCloseReg(void* opaque) { static_cast<CallbackReg*>(opaque)->Release(); }

struct ConnUnref {
  virConnectPtr c;
  ~ConnUnref() { virConnectClose(c); }
};

struct NodeInfo {
  virNodeInfo info;
};

struct Stats {
  std::vector<std::pair<std::string, unsigned long long>> values;
};

}  // namespace

// ---- setup -----------------------------------------------------------------

Napi::Function Connection::Init(Napi::Env env) {
  return DefineClass(
      env, "Connection",
      {
          InstanceMethod<&Connection::Close>("close"),
          InstanceMethod<&Connection::IsClosed>("isClosed"),
          InstanceMethod<&Connection::IsAlive>("isAlive"),
          InstanceMethod<&Connection::GetURI>("getURI"),
          InstanceMethod<&Connection::GetHostname>("getHostname"),
          InstanceMethod<&Connection::GetNodeInfo>("getNodeInfo"),
          InstanceMethod<&Connection::GetNodeMemoryStats>("getNodeMemoryStats"),
          InstanceMethod<&Connection::GetCapabilities>("getCapabilities"),
          InstanceMethod<&Connection::GetLibVersion>("getLibVersion"),
          InstanceMethod<&Connection::GetVersion>("getVersion"),
          InstanceMethod<&Connection::ListAllDomains>("listAllDomains"),
          InstanceMethod<&Connection::LookupDomainByName>("lookupDomainByName"),
          InstanceMethod<&Connection::LookupDomainByUUIDString>("lookupDomainByUUIDString"),
          InstanceMethod<&Connection::DefineXML>("defineXML"),
          InstanceMethod<&Connection::CreateXML>("createXML"),
          InstanceMethod<&Connection::SetKeepAlive>("setKeepAlive"),
          InstanceMethod<&Connection::RegisterCloseCallback>("registerCloseCallback"),
          InstanceMethod<&Connection::UnregisterCloseCallback>("unregisterCloseCallback"),
          InstanceMethod<&Connection::RegisterLifecycleEvents>("registerLifecycleEvents"),
          InstanceMethod<&Connection::DeregisterEvent>("deregisterEvent"),
      });
}

// Only open() makes connections: it passes the virConnectPtr as an External.
Connection::Connection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Connection>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "use open(uri) to make a Connection");
  }
  st_ = std::make_shared<ConnState>();
  st_->conn = info[0].As<Napi::External<virConnect>>().Data();
}

Connection::~Connection() {
  // Finalizer of a connection never closed: close it here, on the JS thread
  // (deregistering callbacks of a remote connection is a round trip).
  if (st_ && !st_->closed.load()) CloseNow(st_, Detach());
}

Napi::Value Connection::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string uri = StringArg(info, 0, "uri");
  unsigned int flags = FlagsArg(info, 1);
  EnsureEventLoop();
  return Run<virConnectPtr>(
      env,
      [uri, flags]() -> virConnectPtr {
        virConnectPtr c = virConnectOpenAuth(uri.c_str(), nullptr, flags);
        if (c == nullptr) Fail();
        virConnSetErrorFunc(c, nullptr, [](void*, virErrorPtr) {});
        return c;
      },
      [](Napi::Env env, virConnectPtr& c) -> Napi::Value {
        virConnectPtr owned = c;
        c = nullptr;
        try {
          return GetData(env)->connectionCtor.New({Napi::External<virConnect>::New(env, owned)});
        } catch (...) {
          virConnectClose(owned);
          throw;
        }
      });
}

// ---- close -----------------------------------------------------------------

std::vector<virDomainPtr> Connection::Detach() {
  st_->closed.store(true);
  std::vector<virDomainPtr> doms;
  for (DomainHandle* h : st_->domains) {
    if (h->dom != nullptr) doms.push_back(h->dom);
    h->dom = nullptr;
  }
  st_->domains.clear();
  return doms;
}

int Connection::CloseNow(const std::shared_ptr<ConnState>& st, std::vector<virDomainPtr> doms) {
  for (virDomainPtr d : doms) virDomainFree(d);
  {
    std::lock_guard<std::mutex> lock(st->mu);
    for (int id : st->lifecycleIds) {
      if (virConnectDomainEventDeregisterAny(st->conn, id) < 0) virResetLastError();
    }
    st->lifecycleIds.clear();
    if (st->closeReg) {
      if (virConnectUnregisterCloseCallback(st->conn, OnClose) < 0) virResetLastError();
      st->closeReg->Release();
      st->closeReg.reset();
    }
  }
  int rc = virConnectClose(st->conn);
  if (rc < 0) virResetLastError();
  return rc;
}

Napi::Value Connection::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (st_->closed.load()) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(Napi::Number::New(env, 0));
    return d.Promise();
  }
  std::shared_ptr<ConnState> st = st_;
  std::vector<virDomainPtr> doms = Detach();
  return Run<int>(env, [st, doms]() { return CloseNow(st, doms); }, Num);
}

Napi::Value Connection::IsClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), st_->closed.load());
}

// ---- plain calls -----------------------------------------------------------

virConnectPtr Connection::Acquire() {
  if (st_->closed.load()) return nullptr;
  if (virConnectRef(st_->conn) < 0) {
    virResetLastError();
    return nullptr;
  }
  return st_->conn;
}

template <typename R>
Napi::Value Connection::Call(Napi::Env env, std::function<R(virConnectPtr)> fn, typename Job<R>::Done done) {
  virConnectPtr c = Acquire();
  if (c == nullptr) return Rejected(env, ClosedError());
  return Run<R>(
      env,
      [c, fn = std::move(fn)]() -> R {
        ConnUnref unref{c};  // drops the call's reference on this thread
        return fn(c);
      },
      std::move(done));
}

Napi::Value Connection::IsAlive(const Napi::CallbackInfo& info) {
  return Call<int>(info.Env(), [](virConnectPtr c) { return Check(virConnectIsAlive(c)); }, Bool);
}

Napi::Value Connection::GetURI(const Napi::CallbackInfo& info) {
  return Call<std::string>(info.Env(), [](virConnectPtr c) { return TakeString(virConnectGetURI(c)); }, Str);
}

Napi::Value Connection::GetHostname(const Napi::CallbackInfo& info) {
  return Call<std::string>(info.Env(), [](virConnectPtr c) { return TakeString(virConnectGetHostname(c)); }, Str);
}

Napi::Value Connection::GetCapabilities(const Napi::CallbackInfo& info) {
  return Call<std::string>(info.Env(), [](virConnectPtr c) { return TakeString(virConnectGetCapabilities(c)); },
                           Str);
}

Napi::Value Connection::GetLibVersion(const Napi::CallbackInfo& info) {
  return Call<double>(
      info.Env(),
      [](virConnectPtr c) {
        unsigned long v = 0;
        Check(virConnectGetLibVersion(c, &v));
        return static_cast<double>(v);
      },
      [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value Connection::GetVersion(const Napi::CallbackInfo& info) {
  return Call<double>(
      info.Env(),
      [](virConnectPtr c) {
        unsigned long v = 0;
        Check(virConnectGetVersion(c, &v));
        return static_cast<double>(v);
      },
      [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value Connection::GetNodeInfo(const Napi::CallbackInfo& info) {
  return Call<NodeInfo>(
      info.Env(),
      [](virConnectPtr c) {
        NodeInfo n{};
        Check(virNodeGetInfo(c, &n.info));
        return n;
      },
      [](Napi::Env env, NodeInfo& n) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("model", std::string(n.info.model, strnlen(n.info.model, sizeof n.info.model)));
        o.Set("memoryKiB", static_cast<double>(n.info.memory));
        o.Set("cpus", n.info.cpus);
        o.Set("mhz", n.info.mhz);
        o.Set("nodes", n.info.nodes);
        o.Set("sockets", n.info.sockets);
        o.Set("cores", n.info.cores);
        o.Set("threads", n.info.threads);
        return o;
      });
}

Napi::Value Connection::GetNodeMemoryStats(const Napi::CallbackInfo& info) {
  int cell = VIR_NODE_MEMORY_STATS_ALL_CELLS;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "cellNum must be a number");
    cell = info[0].As<Napi::Number>().Int32Value();
  }
  unsigned int flags = FlagsArg(info, 1);
  return Call<Stats>(
      info.Env(),
      [cell, flags](virConnectPtr c) {
        int n = 0;
        Check(virNodeGetMemoryStats(c, cell, nullptr, &n, flags));
        std::vector<virNodeMemoryStats> params(n > 0 ? n : 1);
        Check(virNodeGetMemoryStats(c, cell, params.data(), &n, flags));
        Stats s;
        for (int i = 0; i < n; i++) {
          s.values.emplace_back(std::string(params[i].field, strnlen(params[i].field, VIR_NODE_MEMORY_STATS_FIELD_LENGTH)),
                                params[i].value);
        }
        return s;
      },
      [](Napi::Env env, Stats& s) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        for (auto& [k, v] : s.values) o.Set(k, static_cast<double>(v));
        return o;
      });
}

// ---- domains ---------------------------------------------------------------

namespace {
Napi::Value DomainsToJs(Napi::Env env, const std::shared_ptr<ConnState>& st, std::vector<DomPtr>& doms) {
  Napi::Array arr = Napi::Array::New(env, doms.size());
  for (size_t i = 0; i < doms.size(); i++) arr.Set(i, Domain::Wrap(env, st, std::move(doms[i])));
  return arr;
}
}  // namespace

Napi::Value Connection::ListAllDomains(const Napi::CallbackInfo& info) {
  unsigned int flags = FlagsArg(info, 0);
  std::shared_ptr<ConnState> st = st_;
  return Call<std::vector<DomPtr>>(
      info.Env(),
      [flags](virConnectPtr c) {
        virDomainPtr* list = nullptr;
        int n = Check(virConnectListAllDomains(c, &list, flags));
        std::vector<DomPtr> out;
        for (int i = 0; i < n; i++) out.emplace_back(list[i]);
        free(list);
        return out;
      },
      [st](Napi::Env env, std::vector<DomPtr>& doms) { return DomainsToJs(env, st, doms); });
}

#define LV_DOMAIN_RESULT                                                                          \
  [st](Napi::Env env, DomPtr& d) -> Napi::Value {                                                 \
    return Domain::Wrap(env, st, std::move(d));                                                   \
  }

Napi::Value Connection::LookupDomainByName(const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "name");
  std::shared_ptr<ConnState> st = st_;
  return Call<DomPtr>(
      info.Env(),
      [name](virConnectPtr c) {
        virDomainPtr d = virDomainLookupByName(c, name.c_str());
        if (d == nullptr) Fail();
        return DomPtr(d);
      },
      LV_DOMAIN_RESULT);
}

Napi::Value Connection::LookupDomainByUUIDString(const Napi::CallbackInfo& info) {
  std::string uuid = StringArg(info, 0, "uuid");
  std::shared_ptr<ConnState> st = st_;
  return Call<DomPtr>(
      info.Env(),
      [uuid](virConnectPtr c) {
        virDomainPtr d = virDomainLookupByUUIDString(c, uuid.c_str());
        if (d == nullptr) Fail();
        return DomPtr(d);
      },
      LV_DOMAIN_RESULT);
}

Napi::Value Connection::DefineXML(const Napi::CallbackInfo& info) {
  std::string xml = StringArg(info, 0, "xml");
  unsigned int flags = FlagsArg(info, 1);
  std::shared_ptr<ConnState> st = st_;
  return Call<DomPtr>(
      info.Env(),
      [xml, flags](virConnectPtr c) {
        virDomainPtr d = virDomainDefineXMLFlags(c, xml.c_str(), flags);
        if (d == nullptr) Fail();
        return DomPtr(d);
      },
      LV_DOMAIN_RESULT);
}

Napi::Value Connection::CreateXML(const Napi::CallbackInfo& info) {
  std::string xml = StringArg(info, 0, "xml");
  unsigned int flags = FlagsArg(info, 1);
  std::shared_ptr<ConnState> st = st_;
  return Call<DomPtr>(
      info.Env(),
      [xml, flags](virConnectPtr c) {
        virDomainPtr d = virDomainCreateXML(c, xml.c_str(), flags);
        if (d == nullptr) Fail();
        return DomPtr(d);
      },
      LV_DOMAIN_RESULT);
}

#undef LV_DOMAIN_RESULT

// ---- keepalive, close callback, events -------------------------------------

Napi::Value Connection::SetKeepAlive(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "setKeepAlive(intervalSeconds, count) takes two numbers");
  }
  int interval = info[0].As<Napi::Number>().Int32Value();
  unsigned int count = info[1].As<Napi::Number>().Uint32Value();
  return Call<int>(
      info.Env(), [interval, count](virConnectPtr c) { return Check(virConnectSetKeepAlive(c, interval, count)); },
      Num);
}

Napi::Value Connection::RegisterCloseCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function fn = FunctionArg(info, 0, "callback");
  if (st_->closed.load()) return Rejected(env, ClosedError());
  auto reg = std::make_unique<CallbackReg>(Napi::ThreadSafeFunction::New(env, fn, "libvirt-close", 0, 1));
  std::shared_ptr<ConnState> st = st_;
  // The unique_ptr travels in a shared_ptr so the std::function stays copyable.
  auto holder = std::make_shared<std::unique_ptr<CallbackReg>>(std::move(reg));
  return Call<int>(
      env,
      [st, holder](virConnectPtr c) {
        std::unique_ptr<CallbackReg> reg = std::move(*holder);
        std::lock_guard<std::mutex> lock(st->mu);
        if (st->closed.load() || st->closeReg) {
          reg->Release();
          throw st->closed.load() ? ClosedError()
                                  : BindingError(VIR_ERR_OPERATION_INVALID, "a close callback is already registered");
        }
        if (virConnectRegisterCloseCallback(c, OnClose, reg.get(), FreeCloseReg) < 0) {
          LvError e = CaptureLastError();
          reg->Release();
          throw e;
        }
        st->closeReg = std::move(reg);
        return 0;
      },
      Undef);
}

Napi::Value Connection::UnregisterCloseCallback(const Napi::CallbackInfo& info) {
  std::shared_ptr<ConnState> st = st_;
  return Call<int>(
      info.Env(),
      [st](virConnectPtr c) {
        std::lock_guard<std::mutex> lock(st->mu);
        if (!st->closeReg) return 0;
        int rc = virConnectUnregisterCloseCallback(c, OnClose);
        LvError e;
        if (rc < 0) e = CaptureLastError();
        st->closeReg->Release();
        st->closeReg.reset();
        if (rc < 0) throw e;
        return 1;
      },
      Bool);
}

Napi::Value Connection::RegisterLifecycleEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function fn = FunctionArg(info, 0, "callback");
  if (st_->closed.load()) return Rejected(env, ClosedError());
  auto* reg = new CallbackReg(Napi::ThreadSafeFunction::New(env, fn, "libvirt-lifecycle", 0, 1));
  std::shared_ptr<ConnState> st = st_;
  EnsureEventLoop();
  return Call<int>(
      env,
      [st, reg](virConnectPtr c) {
        std::lock_guard<std::mutex> lock(st->mu);
        if (st->closed.load()) {
          FreeLifecycleReg(reg);
          throw ClosedError();
        }
        int id = virConnectDomainEventRegisterAny(c, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                  VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle), reg, FreeLifecycleReg);
        if (id < 0) {
          LvError e = CaptureLastError();
          FreeLifecycleReg(reg);  // libvirt does not call freecb when registering fails
          throw e;
        }
        st->lifecycleIds.insert(id);
        return id;
      },
      Num);
}

Napi::Value Connection::DeregisterEvent(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "callbackId must be a number");
  int id = info[0].As<Napi::Number>().Int32Value();
  std::shared_ptr<ConnState> st = st_;
  return Call<int>(
      info.Env(),
      [st, id](virConnectPtr c) {
        std::lock_guard<std::mutex> lock(st->mu);
        if (st->lifecycleIds.count(id) == 0) return 0;
        Check(virConnectDomainEventDeregisterAny(c, id));  // libvirt then calls freecb
        st->lifecycleIds.erase(id);
        return 1;
      },
      Bool);
}

}  // namespace lv
