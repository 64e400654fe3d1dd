// Domain: one virDomainPtr of a Connection.
#include "objects.h"

#include <variant>

namespace lv {

namespace {

struct DomUnref {
  virDomainPtr d;
  ~DomUnref() { virDomainFree(d); }
};

struct Pending {
  std::shared_ptr<ConnState> st;
  DomPtr dom;
};

struct StatePair {
  int state = 0, reason = 0;
};

struct JobInfo {
  virDomainJobInfo info;
};

// A typed parameter (virTypedParameter) copied off libvirt's memory.
struct Param {
  std::string name;
  std::variant<double, bool, std::string> value;
};

struct JobStats {
  int type = 0;
  std::vector<Param> params;
};

std::vector<Param> CopyParams(virTypedParameterPtr params, int n) {
  std::vector<Param> out;
  for (int i = 0; i < n; i++) {
    const virTypedParameter& p = params[i];
    Param q;
    q.name = p.field;
    switch (p.type) {
      case VIR_TYPED_PARAM_INT: q.value = static_cast<double>(p.value.i); break;
      case VIR_TYPED_PARAM_UINT: q.value = static_cast<double>(p.value.ui); break;
      case VIR_TYPED_PARAM_LLONG: q.value = static_cast<double>(p.value.l); break;
      case VIR_TYPED_PARAM_ULLONG: q.value = static_cast<double>(p.value.ul); break;
      case VIR_TYPED_PARAM_DOUBLE: q.value = p.value.d; break;
      case VIR_TYPED_PARAM_BOOLEAN: q.value = p.value.b != 0; break;
      case VIR_TYPED_PARAM_STRING: q.value = std::string(p.value.s != nullptr ? p.value.s : ""); break;
      default: continue;
    }
    out.push_back(std::move(q));
  }
  return out;
}

// Migration parameters read from a JS object on the JS thread.
struct MigrateParams {
  std::vector<std::pair<std::string, std::string>> strings;
  std::vector<std::pair<std::string, unsigned long long>> ullongs;
  std::vector<std::pair<std::string, int>> ints;
};

// RAII for a typed parameter list built with virTypedParamsAdd*.
struct TypedParams {
  virTypedParameterPtr params = nullptr;
  int n = 0, max = 0;
  ~TypedParams() { virTypedParamsFree(params, n); }
};

}  // namespace

Napi::Function Domain::Init(Napi::Env env) {
  return DefineClass(env, "Domain",
                     {
                         InstanceMethod<&Domain::Free>("free"),
                         InstanceMethod<&Domain::GetName>("getName"),
                         InstanceMethod<&Domain::GetUUIDString>("getUUIDString"),
                         InstanceMethod<&Domain::GetID>("getID"),
                         InstanceMethod<&Domain::GetState>("getState"),
                         InstanceMethod<&Domain::GetInfo>("getInfo"),
                         InstanceMethod<&Domain::GetXMLDesc>("getXMLDesc"),
                         InstanceMethod<&Domain::IsActive>("isActive"),
                         InstanceMethod<&Domain::IsPersistent>("isPersistent"),
                         InstanceMethod<&Domain::Create>("create"),
                         InstanceMethod<&Domain::CreateWithFlags>("createWithFlags"),
                         InstanceMethod<&Domain::Shutdown>("shutdown"),
                         InstanceMethod<&Domain::ShutdownFlags>("shutdownFlags"),
                         InstanceMethod<&Domain::Destroy>("destroy"),
                         InstanceMethod<&Domain::DestroyFlags>("destroyFlags"),
                         InstanceMethod<&Domain::Reboot>("reboot"),
                         InstanceMethod<&Domain::Reset>("reset"),
                         InstanceMethod<&Domain::Suspend>("suspend"),
                         InstanceMethod<&Domain::Resume>("resume"),
                         InstanceMethod<&Domain::ManagedSave>("managedSave"),
                         InstanceMethod<&Domain::HasManagedSaveImage>("hasManagedSaveImage"),
                         InstanceMethod<&Domain::ManagedSaveRemove>("managedSaveRemove"),
                         InstanceMethod<&Domain::Undefine>("undefine"),
                         InstanceMethod<&Domain::UndefineFlags>("undefineFlags"),
                         InstanceMethod<&Domain::AttachDeviceFlags>("attachDeviceFlags"),
                         InstanceMethod<&Domain::DetachDeviceFlags>("detachDeviceFlags"),
                         InstanceMethod<&Domain::BlockResize>("blockResize"),
                         InstanceMethod<&Domain::QemuMonitorCommand>("qemuMonitorCommand"),
                         InstanceMethod<&Domain::SnapshotCreateXML>("snapshotCreateXML"),
                         InstanceMethod<&Domain::MigrateToURI3>("migrateToURI3"),
                         InstanceMethod<&Domain::AbortJob>("abortJob"),
                         InstanceMethod<&Domain::GetJobInfo>("getJobInfo"),
                         InstanceMethod<&Domain::GetJobStats>("getJobStats"),
                     });
}

Napi::Value Domain::Wrap(Napi::Env env, const std::shared_ptr<ConnState>& st, DomPtr dom) {
  Pending pending{st, std::move(dom)};
  return GetData(env)->domainCtor.New({Napi::External<Pending>::New(env, &pending)});
  // If New threw, pending.dom still owns the pointer and frees it.
}

Domain::Domain(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Domain>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "Domain objects come from Connection methods");
  }
  Pending* p = info[0].As<Napi::External<Pending>>().Data();
  st_ = p->st;
  if (st_->closed.load()) return;  // stays empty: calls reject; p->dom frees the pointer
  handle_.dom = p->dom.release();
  st_->domains.insert(&handle_);
}

Domain::~Domain() { FreeHandle(); }

// virDomainFree only drops a reference (the connection holds its own while
// it is open), so it is cheap enough for the JS thread.
void Domain::FreeHandle() {
  if (handle_.dom == nullptr) return;
  virDomainFree(handle_.dom);
  handle_.dom = nullptr;
  st_->domains.erase(&handle_);
}

Napi::Value Domain::Free(const Napi::CallbackInfo& info) {
  FreeHandle();
  return info.Env().Undefined();
}

template <typename R>
Napi::Value Domain::Call(Napi::Env env, std::function<R(virDomainPtr)> fn, typename Job<R>::Done done) {
  if (st_->closed.load()) return Rejected(env, BindingError(VIR_ERR_INVALID_CONN, "connection is closed"));
  if (handle_.dom == nullptr) return Rejected(env, BindingError(VIR_ERR_INVALID_DOMAIN, "domain object was freed"));
  virDomainPtr d = handle_.dom;
  if (virDomainRef(d) < 0) return Rejected(env, CaptureLastError());
  return Run<R>(
      env,
      [d, fn = std::move(fn)]() -> R {
        DomUnref unref{d};  // drops the call's reference on this thread
        return fn(d);
      },
      std::move(done));
}

Napi::Value Domain::Simple(const Napi::CallbackInfo& info, std::function<int(virDomainPtr, unsigned int)> fn,
                           typename Job<int>::Done done) {
  unsigned int flags = FlagsArg(info, 0);
  return Call<int>(info.Env(), [fn = std::move(fn), flags](virDomainPtr d) { return Check(fn(d, flags)); },
                   std::move(done));
}

Napi::Value Domain::GetName(const Napi::CallbackInfo& info) {
  return Call<std::string>(
      info.Env(),
      [](virDomainPtr d) {
        const char* name = virDomainGetName(d);  // owned by the domain object
        if (name == nullptr) Fail();
        return std::string(name);
      },
      Str);
}

Napi::Value Domain::GetUUIDString(const Napi::CallbackInfo& info) {
  return Call<std::string>(
      info.Env(),
      [](virDomainPtr d) {
        char buf[VIR_UUID_STRING_BUFLEN] = {0};
        Check(virDomainGetUUIDString(d, buf));
        return std::string(buf);
      },
      Str);
}

Napi::Value Domain::GetID(const Napi::CallbackInfo& info) {
  return Call<int>(
      info.Env(),
      [](virDomainPtr d) {
        unsigned int id = virDomainGetID(d);
        if (id == static_cast<unsigned int>(-1)) {
          virResetLastError();  // inactive domains have no id
          return -1;
        }
        return static_cast<int>(id);
      },
      Num);
}

Napi::Value Domain::GetState(const Napi::CallbackInfo& info) {
  unsigned int flags = FlagsArg(info, 0);
  return Call<StatePair>(
      info.Env(),
      [flags](virDomainPtr d) {
        StatePair s;
        Check(virDomainGetState(d, &s.state, &s.reason, flags));
        return s;
      },
      [](Napi::Env env, StatePair& s) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", s.state);
        o.Set("reason", s.reason);
        return o;
      });
}

Napi::Value Domain::GetInfo(const Napi::CallbackInfo& info) {
  return Call<virDomainInfo>(
      info.Env(),
      [](virDomainPtr d) {
        virDomainInfo i{};
        Check(virDomainGetInfo(d, &i));
        return i;
      },
      [](Napi::Env env, virDomainInfo& i) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", static_cast<int>(i.state));
        o.Set("maxMemKiB", static_cast<double>(i.maxMem));
        o.Set("memoryKiB", static_cast<double>(i.memory));
        o.Set("nrVirtCpu", static_cast<int>(i.nrVirtCpu));
        o.Set("cpuTimeNs", static_cast<double>(i.cpuTime));
        return o;
      });
}

Napi::Value Domain::GetXMLDesc(const Napi::CallbackInfo& info) {
  unsigned int flags = FlagsArg(info, 0);
  return Call<std::string>(
      info.Env(), [flags](virDomainPtr d) { return TakeString(virDomainGetXMLDesc(d, flags)); }, Str);
}

Napi::Value Domain::IsActive(const Napi::CallbackInfo& info) {
  return Call<int>(info.Env(), [](virDomainPtr d) { return Check(virDomainIsActive(d)); }, Bool);
}

Napi::Value Domain::IsPersistent(const Napi::CallbackInfo& info) {
  return Call<int>(info.Env(), [](virDomainPtr d) { return Check(virDomainIsPersistent(d)); }, Bool);
}

Napi::Value Domain::Create(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int) { return virDomainCreate(d); });
}

Napi::Value Domain::CreateWithFlags(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainCreateWithFlags(d, f); });
}

Napi::Value Domain::Shutdown(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int) { return virDomainShutdown(d); });
}

Napi::Value Domain::ShutdownFlags(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainShutdownFlags(d, f); });
}

Napi::Value Domain::Destroy(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int) { return virDomainDestroy(d); });
}

Napi::Value Domain::DestroyFlags(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainDestroyFlags(d, f); });
}

Napi::Value Domain::Reboot(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainReboot(d, f); });
}

Napi::Value Domain::Reset(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainReset(d, f); });
}

Napi::Value Domain::Suspend(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int) { return virDomainSuspend(d); });
}

Napi::Value Domain::Resume(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int) { return virDomainResume(d); });
}

Napi::Value Domain::ManagedSave(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainManagedSave(d, f); });
}

Napi::Value Domain::HasManagedSaveImage(const Napi::CallbackInfo& info) {
  return Simple(
      info, [](virDomainPtr d, unsigned int f) { return virDomainHasManagedSaveImage(d, f); }, Bool);
}

Napi::Value Domain::ManagedSaveRemove(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainManagedSaveRemove(d, f); });
}

Napi::Value Domain::Undefine(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int) { return virDomainUndefine(d); });
}

Napi::Value Domain::UndefineFlags(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) { return virDomainUndefineFlags(d, f); });
}

Napi::Value Domain::AbortJob(const Napi::CallbackInfo& info) {
  return Simple(info, [](virDomainPtr d, unsigned int f) {
    return f == 0 ? virDomainAbortJob(d) : virDomainAbortJobFlags(d, f);
  });
}

Napi::Value Domain::AttachDeviceFlags(const Napi::CallbackInfo& info) {
  std::string xml = StringArg(info, 0, "xml");
  unsigned int flags = FlagsArg(info, 1);
  return Call<int>(
      info.Env(), [xml, flags](virDomainPtr d) { return Check(virDomainAttachDeviceFlags(d, xml.c_str(), flags)); }, Undef);
}

Napi::Value Domain::DetachDeviceFlags(const Napi::CallbackInfo& info) {
  std::string xml = StringArg(info, 0, "xml");
  unsigned int flags = FlagsArg(info, 1);
  return Call<int>(
      info.Env(), [xml, flags](virDomainPtr d) { return Check(virDomainDetachDeviceFlags(d, xml.c_str(), flags)); }, Undef);
}

Napi::Value Domain::BlockResize(const Napi::CallbackInfo& info) {
  std::string disk = StringArg(info, 0, "disk");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "size must be a number");
  double size = info[1].As<Napi::Number>().DoubleValue();
  if (!(size >= 0) || size > 9007199254740991.0 || size != static_cast<double>(static_cast<unsigned long long>(size))) {
    throw Napi::TypeError::New(info.Env(), "size must be a whole number from 0 to 2^53-1");
  }
  unsigned long long bytes = static_cast<unsigned long long>(size);
  unsigned int flags = FlagsArg(info, 2);
  return Call<int>(
      info.Env(), [disk, bytes, flags](virDomainPtr d) { return Check(virDomainBlockResize(d, disk.c_str(), bytes, flags)); }, Undef);
}

Napi::Value Domain::QemuMonitorCommand(const Napi::CallbackInfo& info) {
  std::string cmd = StringArg(info, 0, "cmd");
  unsigned int flags = FlagsArg(info, 1);
  return Call<std::string>(
      info.Env(),
      [cmd, flags](virDomainPtr d) {
        char* out = nullptr;
        Check(virDomainQemuMonitorCommand(d, cmd.c_str(), &out, flags));
        std::string reply = out != nullptr ? out : "";
        free(out);
        return reply;
      },
      Str);
}

Napi::Value Domain::SnapshotCreateXML(const Napi::CallbackInfo& info) {
  std::string xml = StringArg(info, 0, "xml");
  unsigned int flags = FlagsArg(info, 1);
  return Call<std::string>(
      info.Env(),
      [xml, flags](virDomainPtr d) {
        virDomainSnapshotPtr snap = virDomainSnapshotCreateXML(d, xml.c_str(), flags);
        if (snap == nullptr) Fail();
        const char* name = virDomainSnapshotGetName(snap);
        std::string out = name != nullptr ? name : "";
        virDomainSnapshotFree(snap);
        return out;
      },
      Str);
}

Napi::Value Domain::MigrateToURI3(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::optional<std::string> dconnuri;
  if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull()) dconnuri = StringArg(info, 0, "dconnuri");
  MigrateParams mp;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    // JS key -> libvirt typed parameter. Strings:
    static const std::pair<const char*, const char*> kStrings[] = {
        {"migrateUri", VIR_MIGRATE_PARAM_URI},         {"destName", VIR_MIGRATE_PARAM_DEST_NAME},
        {"destXml", VIR_MIGRATE_PARAM_DEST_XML},       {"persistXml", VIR_MIGRATE_PARAM_PERSIST_XML},
        {"listenAddress", VIR_MIGRATE_PARAM_LISTEN_ADDRESS}, {"tlsDestination", VIR_MIGRATE_PARAM_TLS_DESTINATION},
    };
    for (auto& [key, param] : kStrings) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) continue;
      if (!v.IsString()) throw Napi::TypeError::New(env, std::string(key) + " must be a string");
      mp.strings.emplace_back(param, v.As<Napi::String>().Utf8Value());
    }
    // String lists: one typed parameter per element, under the same name.
    static const std::pair<const char*, const char*> kStringLists[] = {
        {"migrateDisks", VIR_MIGRATE_PARAM_MIGRATE_DISKS},
    };
    for (auto& [key, param] : kStringLists) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) continue;
      if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(key) + " must be an array of strings");
      Napi::Array a = v.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value e = a.Get(i);
        if (!e.IsString()) throw Napi::TypeError::New(env, std::string(key) + " must be an array of strings");
        mp.strings.emplace_back(param, e.As<Napi::String>().Utf8Value());
      }
    }
    static const std::pair<const char*, const char*> kUllongs[] = {
        {"bandwidthMiBs", VIR_MIGRATE_PARAM_BANDWIDTH},
        {"bandwidthPostcopyBytes", VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY},
    };
    for (auto& [key, param] : kUllongs) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) continue;
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(key) + " must be a number");
      mp.ullongs.emplace_back(param, static_cast<unsigned long long>(v.As<Napi::Number>().Int64Value()));
    }
    static const std::pair<const char*, const char*> kInts[] = {
        {"parallelConnections", VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS},
        {"autoConvergeInitial", VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL},
        {"autoConvergeIncrement", VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT},
    };
    for (auto& [key, param] : kInts) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) continue;
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(key) + " must be a number");
      mp.ints.emplace_back(param, v.As<Napi::Number>().Int32Value());
    }
  }
  unsigned int flags = FlagsArg(info, 2);
  return Call<int>(
      env,
      [dconnuri, mp, flags](virDomainPtr d) {
        TypedParams tp;
        for (auto& [k, v] : mp.strings) Check(virTypedParamsAddString(&tp.params, &tp.n, &tp.max, k.c_str(), v.c_str()));
        for (auto& [k, v] : mp.ullongs) Check(virTypedParamsAddULLong(&tp.params, &tp.n, &tp.max, k.c_str(), v));
        for (auto& [k, v] : mp.ints) Check(virTypedParamsAddInt(&tp.params, &tp.n, &tp.max, k.c_str(), v));
        return Check(virDomainMigrateToURI3(d, dconnuri ? dconnuri->c_str() : nullptr, tp.params, tp.n, flags));
      },
      Undef);
}

Napi::Value Domain::GetJobInfo(const Napi::CallbackInfo& info) {
  return Call<JobInfo>(
      info.Env(),
      [](virDomainPtr d) {
        JobInfo j{};
        Check(virDomainGetJobInfo(d, &j.info));
        return j;
      },
      [](Napi::Env env, JobInfo& j) -> Napi::Value {
        const virDomainJobInfo& i = j.info;
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", i.type);
        o.Set("timeElapsedMs", static_cast<double>(i.timeElapsed));
        o.Set("timeRemainingMs", static_cast<double>(i.timeRemaining));
        o.Set("dataTotal", static_cast<double>(i.dataTotal));
        o.Set("dataProcessed", static_cast<double>(i.dataProcessed));
        o.Set("dataRemaining", static_cast<double>(i.dataRemaining));
        o.Set("memTotal", static_cast<double>(i.memTotal));
        o.Set("memProcessed", static_cast<double>(i.memProcessed));
        o.Set("memRemaining", static_cast<double>(i.memRemaining));
        o.Set("fileTotal", static_cast<double>(i.fileTotal));
        o.Set("fileProcessed", static_cast<double>(i.fileProcessed));
        o.Set("fileRemaining", static_cast<double>(i.fileRemaining));
        return o;
      });
}

Napi::Value Domain::GetJobStats(const Napi::CallbackInfo& info) {
  unsigned int flags = FlagsArg(info, 0);
  return Call<JobStats>(
      info.Env(),
      [flags](virDomainPtr d) {
        JobStats s;
        virTypedParameterPtr params = nullptr;
        int n = 0;
        Check(virDomainGetJobStats(d, &s.type, &params, &n, flags));
        s.params = CopyParams(params, n);
        virTypedParamsFree(params, n);
        return s;
      },
      [](Napi::Env env, JobStats& s) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", s.type);
        Napi::Object stats = Napi::Object::New(env);
        for (auto& p : s.params) {
          if (auto* num = std::get_if<double>(&p.value)) stats.Set(p.name, *num);
          else if (auto* b = std::get_if<bool>(&p.value)) stats.Set(p.name, *b);
          else stats.Set(p.name, std::get<std::string>(p.value));
        }
        o.Set("stats", stats);
        return o;
      });
}

}  // namespace lv
