// Domain: one virDomainPtr of a Connection.
#include "domain-call.h"

#include <variant>

namespace lv {

namespace {

struct Pending {
  std::shared_ptr<ConnState> st;
  DomPtr dom;
};

struct StatePair {
  int state = 0, reason = 0;
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

}  // namespace lv
