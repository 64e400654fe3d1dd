// Module setup: libvirt initialisation, the libvirt event loop thread,
// constants, and the module functions.
#include "objects.h"

#include <chrono>
#include <condition_variable>
#include <thread>

namespace lv {

namespace {

// ---- process-wide libvirt setup --------------------------------------------

std::once_flag g_initOnce;
int g_initError = 0;  // 0, or the step that failed

void SilentErrorFunc(void*, virErrorPtr) {}

void InitLibvirt() {
  if (virInitialize() < 0) {
    g_initError = 1;
    return;
  }
  // Must come before any connection is opened so that remote connections
  // (keepalive, events) use it.
  if (virEventRegisterDefaultImpl() < 0) {
    g_initError = 2;
    return;
  }
  // libvirt's default handler prints every error to stderr; errors reach JS
  // through the rejections instead.
  virSetErrorFunc(nullptr, SilentErrorFunc);
}

// ---- the event loop thread --------------------------------------------------
// One thread per process runs virEventRunDefaultImpl(): libvirt calls the
// event callbacks (lifecycle, close, keepalive timers, the test driver's
// event dispatch timer) on it. It holds no libuv handle, so it never keeps
// Node alive; stopEventLoop() ends it, and the environment cleanup hook of
// the last environment using the addon does too.

std::mutex g_loopMu;
std::condition_variable g_loopCv;
bool g_loopRunning = false;  // a thread is in the loop (or about to be)
std::atomic<bool> g_loopQuit{false};
int g_envCount = 0;

void WakeTimer(int timer, void*) { virEventRemoveTimeout(timer); }

void LoopMain() {
  while (!g_loopQuit.load()) {
    if (virEventRunDefaultImpl() < 0) virResetLastError();
  }
  std::lock_guard<std::mutex> lock(g_loopMu);
  g_loopRunning = false;
  g_loopCv.notify_all();
}

// Returns false if the thread did not stop within the timeout.
bool StopEventLoop() {
  std::unique_lock<std::mutex> lock(g_loopMu);
  if (!g_loopRunning) return true;
  g_loopQuit.store(true);
  // A zero timeout makes the running iteration return at once.
  if (virEventAddTimeout(0, WakeTimer, nullptr, nullptr) < 0) virResetLastError();
  return g_loopCv.wait_for(lock, std::chrono::seconds(5), [] { return !g_loopRunning; });
}

void EnvCleanup(void*) {
  bool last;
  {
    std::lock_guard<std::mutex> lock(g_loopMu);
    last = --g_envCount == 0;
  }
  if (last) StopEventLoop();
}

// ---- module functions ---------------------------------------------------------

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Function cls = FunctionArg(info, 0, "errorClass");
  GetData(info.Env())->errorClass = Napi::Persistent(cls);
  return info.Env().Undefined();
}

Napi::Value GetVersion(const Napi::CallbackInfo& info) {
  return Run<double>(
      info.Env(),
      []() {
        unsigned long v = 0;
        Check(virGetVersion(&v, nullptr, nullptr));
        return static_cast<double>(v);
      },
      [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value ShutdownEventLoop(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), StopEventLoop());
}

Napi::Value EventLoopRunning(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_loopMu);
  return Napi::Boolean::New(info.Env(), g_loopRunning);
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
#define LV_ENUM(type, name) c.Set(#name, Napi::Number::New(env, static_cast<double>(name)));
#define LV_INT(name) c.Set(#name, Napi::Number::New(env, static_cast<double>(name)));
#define LV_STR(name) c.Set(#name, Napi::String::New(env, name));
#include "constants.inc"
#undef LV_ENUM
#undef LV_INT
#undef LV_STR
  return c;
}

}  // namespace

AddonData* GetData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

void EnsureEventLoop() {
  std::lock_guard<std::mutex> lock(g_loopMu);
  if (g_loopRunning) return;
  g_loopQuit.store(false);
  g_loopRunning = true;
  std::thread(LoopMain).detach();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  std::call_once(g_initOnce, InitLibvirt);
  if (g_initError != 0) {
    throw Napi::Error::New(env, g_initError == 1 ? "virInitialize failed" : "virEventRegisterDefaultImpl failed");
  }
  auto* data = new AddonData();
  env.SetInstanceData(data);
  {
    std::lock_guard<std::mutex> lock(g_loopMu);
    g_envCount++;
  }
  napi_add_env_cleanup_hook(env, EnvCleanup, nullptr);

  Napi::Function connection = Connection::Init(env);
  Napi::Function domain = Domain::Init(env);
  data->connectionCtor = Napi::Persistent(connection);
  data->domainCtor = Napi::Persistent(domain);

  exports.Set("Connection", connection);
  exports.Set("Domain", domain);
  exports.Set("open", Napi::Function::New(env, Connection::Open, "open"));
  exports.Set("getVersion", Napi::Function::New(env, GetVersion, "getVersion"));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  exports.Set("shutdownEventLoop", Napi::Function::New(env, ShutdownEventLoop, "shutdownEventLoop"));
  exports.Set("eventLoopRunning", Napi::Function::New(env, EventLoopRunning, "eventLoopRunning"));
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace lv

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return lv::Init(env, exports); }

NODE_API_MODULE(novamesh_libvirt, InitModule)
