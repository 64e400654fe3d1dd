// Domain::Call, shared by domain.cc and domain-jobs.cc: runs fn(dom) on a
// pool thread holding a reference to the domain for the call.
#pragma once

#include "objects.h"

namespace lv {

// Drops a reference to a domain when it goes out of scope.
struct DomUnref {
  virDomainPtr d;
  ~DomUnref() { virDomainFree(d); }
};

template <typename R>
inline Napi::Value Domain::Call(Napi::Env env, std::function<R(virDomainPtr)> fn, typename Job<R>::Done done) {
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

}  // namespace lv
