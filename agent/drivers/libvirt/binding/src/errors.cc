// libvirt error capture and its JS form.
#include "common.h"

#include <cstring>
#include <unordered_map>

namespace lv {

namespace {

// Names of the members of one libvirt enum (virErrorNumber, virErrorDomain),
// from the generated list in constants.inc.
std::unordered_map<int, const char*>* NamesOf(const char* type) {
  auto* m = new std::unordered_map<int, const char*>();
  auto add = [&](const char* t, int value, const char* name) {
    if (strcmp(t, type) == 0) m->emplace(value, name);
  };
#define LV_ENUM(type, name) add(#type, static_cast<int>(name), #name);
#define LV_STR(name)
#define LV_INT(name)
#include "constants.inc"
#undef LV_ENUM
#undef LV_STR
#undef LV_INT
  return m;
}

const std::unordered_map<int, const char*>& CodeNames() {
  static const auto* names = NamesOf("virErrorNumber");
  return *names;
}

const std::unordered_map<int, const char*>& DomainNames() {
  static const auto* names = NamesOf("virErrorDomain");
  return *names;
}

std::string CodeName(int code) {
  auto it = CodeNames().find(code);
  return it != CodeNames().end() ? it->second : "VIR_ERR_UNKNOWN_" + std::to_string(code);
}

std::string DomainName(int domain) {
  auto it = DomainNames().find(domain);
  return it != DomainNames().end() ? it->second : "VIR_FROM_UNKNOWN_" + std::to_string(domain);
}

}  // namespace

LvError CaptureLastError() {
  LvError e;
  virErrorPtr err = virGetLastError();
  if (err != nullptr && err->code != VIR_ERR_OK) {
    e.code = err->code;
    e.domain = err->domain;
    e.level = err->level;
    e.message = err->message != nullptr ? err->message : "";
    e.str1 = err->str1 != nullptr ? err->str1 : "";
    e.str2 = err->str2 != nullptr ? err->str2 : "";
    e.str3 = err->str3 != nullptr ? err->str3 : "";
    e.int1 = err->int1;
    e.int2 = err->int2;
  } else {
    e.message = "libvirt call failed without reporting an error";
    e.fromBinding = true;
  }
  virResetLastError();
  return e;
}

LvError BindingError(int code, std::string message) {
  LvError e;
  e.code = code;
  e.message = std::move(message);
  e.fromBinding = true;
  return e;
}

Napi::Value MakeJsError(Napi::Env env, const LvError& e) {
  Napi::Object props = Napi::Object::New(env);
  props.Set("code", e.code);
  props.Set("codeName", CodeName(e.code));
  props.Set("domain", e.domain);
  props.Set("domainName", DomainName(e.domain));
  props.Set("level", e.level);
  if (!e.str1.empty()) props.Set("str1", e.str1);
  if (!e.str2.empty()) props.Set("str2", e.str2);
  if (!e.str3.empty()) props.Set("str3", e.str3);
  props.Set("int1", e.int1);
  props.Set("int2", e.int2);
  props.Set("fromBinding", e.fromBinding);

  AddonData* data = GetData(env);
  if (data != nullptr && !data->errorClass.IsEmpty()) {
    return data->errorClass.New({Napi::String::New(env, e.message), props});
  }
  Napi::Error err = Napi::Error::New(env, e.message);
  Napi::Object obj = err.Value();
  Napi::Array keys = props.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    Napi::Value k = keys.Get(i);
    obj.Set(k, props.Get(k));
  }
  obj.Set("name", "LibvirtError");
  return obj;
}

Napi::Promise Rejected(Napi::Env env, const LvError& e) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(MakeJsError(env, e));
  return deferred.Promise();
}

unsigned int FlagsArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return 0;
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "flags must be a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Function FunctionArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsFunction()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a function");
  }
  return info[i].As<Napi::Function>();
}

}  // namespace lv
