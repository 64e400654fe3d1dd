// Shared pieces of the binding: libvirt error capture, the generic
// promise-returning worker, per-environment data and argument helpers.
//
// Threading rule of the whole binding: the JS thread only validates
// arguments, takes references (virConnectRef/virDomainRef, atomic
// increments) and converts results; every libvirt API call runs on a libuv
// pool thread inside Job::Execute; the libvirt event loop runs on its own
// thread (eventloop.cc) and reaches JS through thread-safe functions.
#pragma once

#include <napi.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace lv {

// A copy of libvirt's virError (or an error made by the binding itself,
// fromBinding = true, domain VIR_FROM_NONE).
struct LvError {
  int code = VIR_ERR_INTERNAL_ERROR;
  int domain = VIR_FROM_NONE;
  int level = VIR_ERR_ERROR;
  std::string message;
  std::string str1, str2, str3;
  int int1 = 0, int2 = 0;
  bool fromBinding = false;
};

// Reads this thread's last libvirt error (virGetLastError is thread-local:
// call it on the thread that made the failing call, right after it) and
// resets it.
LvError CaptureLastError();
// An error raised by the binding itself (closed connection, freed domain).
LvError BindingError(int code, std::string message);

// Throws this thread's last libvirt error; used inside Job work functions.
[[noreturn]] inline void Fail() { throw CaptureLastError(); }

// Takes ownership of a malloc'd string returned by libvirt (NULL = failure).
inline std::string TakeString(char* s) {
  if (s == nullptr) Fail();
  std::string out(s);
  free(s);
  return out;
}

// Per-environment data (Napi::Env::SetInstanceData).
struct AddonData {
  Napi::FunctionReference errorClass;  // set from JS by setErrorClass()
  Napi::FunctionReference connectionCtor;
  Napi::FunctionReference domainCtor;
};
AddonData* GetData(Napi::Env env);

// The JS value of an LvError: an instance of the registered error class
// (LibvirtError from index.ts) or a plain Error with the same properties.
Napi::Value MakeJsError(Napi::Env env, const LvError& e);

// A promise already rejected with e.
Napi::Promise Rejected(Napi::Env env, const LvError& e);

// Runs work() on a libuv pool thread and settles a promise on the JS thread:
// resolved with done(env, result) or rejected with the LvError work threw.
template <typename R>
class Job final : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using Done = std::function<Napi::Value(Napi::Env, R&)>;

  Job(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env, "libvirt"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_.emplace(work_());
    } catch (LvError& e) {
      error_.emplace(std::move(e));
    } catch (const std::exception& e) {
      error_.emplace(BindingError(VIR_ERR_INTERNAL_ERROR, e.what()));
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (error_) {
      deferred_.Reject(MakeJsError(env, *error_));
      return;
    }
    try {
      deferred_.Resolve(done_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::optional<R> result_;
  std::optional<LvError> error_;
};

template <typename R>
Napi::Promise Run(Napi::Env env, typename Job<R>::Work work, typename Job<R>::Done done) {
  auto* job = new Job<R>(env, std::move(work), std::move(done));
  Napi::Promise promise = job->Promise();
  job->Queue();
  return promise;
}

// Argument helpers (a wrong type throws a TypeError synchronously).
unsigned int FlagsArg(const Napi::CallbackInfo& info, size_t i);
std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Function FunctionArg(const Napi::CallbackInfo& info, size_t i, const char* what);

// Result helpers.
inline Napi::Value Undef(Napi::Env env, int&) { return env.Undefined(); }
inline Napi::Value Num(Napi::Env env, int& v) { return Napi::Number::New(env, v); }
inline Napi::Value Bool(Napi::Env env, int& v) { return Napi::Boolean::New(env, v != 0); }
inline Napi::Value Str(Napi::Env env, std::string& v) { return Napi::String::New(env, v); }

// Checks a libvirt int return: < 0 is a failure.
inline int Check(int rc) {
  if (rc < 0) Fail();
  return rc;
}

// unique_ptr deleters run wherever the pointer dies.
struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomPtr = std::unique_ptr<virDomain, DomainFree>;

// Starts the libvirt event loop thread if it is not running (eventloop.cc).
void EnsureEventLoop();

}  // namespace lv
