// Domain: migration and job calls (virDomainMigrateToURI3 with typed
// parameters, virDomainGetJobInfo, virDomainGetJobStats).
#include "domain-call.h"

#include <variant>
#include <vector>

namespace lv {

namespace {

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
