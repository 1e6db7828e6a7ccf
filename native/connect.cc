// Upstream sockets Node cannot make (bound to the client's address with IP_TRANSPARENT,
// marked with SO_MARK), connected without blocking a thread; the splice pump
// (native/splice.cc) starts its upstream connections here too. Thin: the policy (when to
// use them, what an error means to an operator) lives in src/forward/.
#include "connect.h"

#include "errors.h"

#include <arpa/inet.h>
#include <climits>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <algorithm>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <thread>
#include <chrono>
#include <map>
#include <unordered_set>
#include <vector>
#include <unistd.h>
#include <uv.h>


namespace traffic {

// Fills `ss` from an address text and port; false when the text is no IP address.
bool ToSockaddr(const std::string& text, int port, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof *ss);
  auto* sin = reinterpret_cast<sockaddr_in*>(ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  // inet_pton stops at a NUL: "127.0.0.1\0junk" must not pass as 127.0.0.1.
  if (text.find('\0') != std::string::npos) return false;
  if (inet_pton(AF_INET, text.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

int PortOf(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port)
                                  : ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
}

namespace {

bool Attempt(const ConnectParams& p, int type, bool keepPort, ConnectStart* out) {
  auto fail = [out](const char* syscall, int fd) {
    out->err = errno;
    out->syscall = syscall;
    if (fd >= 0) close(fd);
    out->fd = -1;
    return false;
  };
  int family = p.remote.ss_family;
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, type == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP);
  if (fd < 0) return fail("socket", -1);
  int one = 1;
  if (p.transparent) {
    int rc = family == AF_INET ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one)
                               : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one);
    if (rc != 0) return fail(family == AF_INET ? "setsockopt IP_TRANSPARENT" : "setsockopt IPV6_TRANSPARENT", fd);
  }
  if (p.mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &p.mark, sizeof p.mark) != 0) return fail("setsockopt SO_MARK", fd);
  if (p.bindLocal) {
    sockaddr_storage local = p.local;
    if (!keepPort) {
      if (local.ss_family == AF_INET) reinterpret_cast<sockaddr_in&>(local).sin_port = 0;
      else reinterpret_cast<sockaddr_in6&>(local).sin6_port = 0;
      // Port 0 on a foreign address: let connect() pick the port from the full 4-tuple,
      // so many upstream connections of one client never exhaust the ephemeral range.
      setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    } else {
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), p.localLen) != 0) return fail("bind", fd);
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&p.remote), p.remoteLen) != 0 && errno != EINPROGRESS) {
    return fail("connect", fd);
  }
  out->fd = fd;
  out->err = 0;
  return true;
}

}  // namespace

// Everything up to the wait for the handshake: socket, options, bind (falling back to any
// port when the client's own is taken), non-blocking connect.
ConnectStart StartConnect(const ConnectParams& p, int type) {
  ConnectStart out;
  bool keepPort = p.bindLocal && PortOf(p.local) != 0;
  if (Attempt(p, type, keepPort, &out)) return out;
  if (keepPort && p.portFallback && (out.err == EADDRINUSE || out.err == EADDRNOTAVAIL)) {
    out.fellBack = true;
    Attempt(p, type, false, &out);
  }
  return out;
}

int ConnectError(int fd) {
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) return errno;
  return soerr;
}

int LocalPortOf(int fd) {
  sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  return getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) == 0 ? PortOf(bound) : 0;
}

namespace {

// connectUpstream's wait for the handshake, on the JS thread's own libuv loop: a poll
// handle for writability and a timer for the timeout. A blocking wait on a pool thread
// would hold one of libuv's four pool threads for the whole timeout, and with it fs,
// dns.lookup, zlib and crypto for the whole process.
class PendingConnect {
 public:
  static Napi::Value Begin(Napi::Env env, const ConnectParams& params) {
    auto* c = new PendingConnect(env);
    Napi::Promise promise = c->deferred_.Promise();
    c->start_ = StartConnect(params, SOCK_STREAM);
    if (c->start_.fd < 0) {
      c->deferred_.Reject(ErrnoError(env, c->start_.err, c->start_.syscall).Value());
      delete c;
      return promise;
    }
    uv_loop_t* loop = nullptr;
    int rc = napi_get_uv_event_loop(env, &loop) == napi_ok ? uv_poll_init_socket(loop, &c->poll_, c->start_.fd) : UV_EINVAL;
    if (rc != 0) {
      close(c->start_.fd);
      c->deferred_.Reject(ErrnoError(env, -rc, "uv_poll_init").Value());
      delete c;
      return promise;
    }
    c->poll_.data = c;
    c->open_++;
    uv_poll_start(&c->poll_, UV_WRITABLE | UV_DISCONNECT, OnPoll);
    if (params.timeoutMs > 0) {
      uv_timer_init(loop, &c->timer_);
      c->timer_.data = c;
      c->open_++;
      c->timed_ = true;
      uv_timer_start(&c->timer_, OnTimer, static_cast<uint64_t>(params.timeoutMs), 0);
    }
    napi_add_env_cleanup_hook(env, OnEnvGone, c);
    return promise;
  }

 private:
  explicit PendingConnect(Napi::Env env) : env_(env), deferred_(Napi::Promise::Deferred::New(env)), context_(env, "traffic-connect") {}

  static void OnPoll(uv_poll_t* handle, int status, int) {
    auto* c = static_cast<PendingConnect*>(handle->data);
    // libuv reports a socket error (EPOLLERR: refused, unreachable) as UV_EBADF: the
    // handshake's own errno is in SO_ERROR.
    int err = ConnectError(c->start_.fd);
    if (err == 0 && status < 0) err = -status;
    c->Finish(err, "connect");
  }

  static void OnTimer(uv_timer_t* handle) { static_cast<PendingConnect*>(handle->data)->Finish(ETIMEDOUT, "connect"); }

  // The environment is going away: nobody waits for the promise, the handles must close
  // before the loop does.
  static void OnEnvGone(void* arg) {
    auto* c = static_cast<PendingConnect*>(arg);
    c->envGone_ = true;
    c->Finish(ECANCELED, "connect");
  }

  void Finish(int err, const char* syscall) {
    if (done_) return;
    done_ = true;
    err_ = err;
    syscall_ = syscall;
    if (!envGone_) napi_remove_env_cleanup_hook(env_, OnEnvGone, this);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClosed);
    if (timed_) uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnClosed);
  }

  // Settles once libuv has let go of the fd: only then may a net.Socket take it over.
  static void OnClosed(uv_handle_t* handle) {
    auto* c = static_cast<PendingConnect*>(handle->data);
    if (--c->open_ > 0) return;
    c->Settle();
    delete c;
  }

  void Settle() {
    if (err_ != 0 || envGone_) {
      close(start_.fd);
      if (envGone_) return;
      Napi::HandleScope handles(env_);
      Napi::CallbackScope scope(env_, context_);
      deferred_.Reject(ErrnoError(env_, err_, syscall_).Value());
      return;
    }
    Napi::HandleScope handles(env_);
    Napi::CallbackScope scope(env_, context_);
    Napi::Object out = Napi::Object::New(env_);
    out.Set("fd", start_.fd);
    out.Set("localPort", LocalPortOf(start_.fd));
    out.Set("portFellBack", start_.fellBack);
    deferred_.Resolve(out);
  }

  Napi::Env env_;
  Napi::Promise::Deferred deferred_;
  Napi::AsyncContext context_;
  ConnectStart start_;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  int open_ = 0;
  bool timed_ = false;
  bool done_ = false;
  bool envGone_ = false;
  int err_ = 0;
  const char* syscall_ = "connect";
};

}  // namespace

static bool GetInt(const Napi::Object& o, const char* key, int64_t min, int64_t max, int64_t fallback, int64_t* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    *out = fallback;
    return true;
  }
  return IntArg(v, std::string("options.") + key, min, max, out);
}

// { address, port, localAddress?, localPort?, transparent?, mark?, portFallback?,
// timeoutMs? }; false with a JS exception pending when something is wrong.
bool ParseConnectOptions(Napi::Env env, const Napi::Value& value, ConnectParams* p) {
  if (!value.IsObject()) {
    ArgError(env, "the upstream connect options must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = value.As<Napi::Object>();
  if (!o.Get("address").IsString()) {
    ArgError(env, "options.address must be an IP address string").ThrowAsJavaScriptException();
    return false;
  }
  int64_t port = 0, localPort = 0, mark = 0, timeoutMs = 0;
  if (!GetInt(o, "port", 1, 65535, 0, &port) || !GetInt(o, "localPort", 0, 65535, 0, &localPort) ||
      !GetInt(o, "mark", 0, 0xffffffffLL, 0, &mark) || !GetInt(o, "timeoutMs", 0, 86400000, 0, &timeoutMs)) {
    return false;
  }
  std::string address = o.Get("address").As<Napi::String>().Utf8Value();
  if (!ToSockaddr(address, static_cast<int>(port), &p->remote, &p->remoteLen)) {
    ArgError(env, "options.address is not an IP address: " + address.substr(0, 64)).ThrowAsJavaScriptException();
    return false;
  }
  p->bindLocal = o.Get("localAddress").IsString();
  if (p->bindLocal) {
    std::string text = o.Get("localAddress").As<Napi::String>().Utf8Value();
    if (!ToSockaddr(text, static_cast<int>(localPort), &p->local, &p->localLen) || p->local.ss_family != p->remote.ss_family) {
      ArgError(env, "options.localAddress must be an IP address of the same family as options.address")
          .ThrowAsJavaScriptException();
      return false;
    }
  }
  p->transparent = o.Get("transparent").ToBoolean().Value();
  p->portFallback = o.Get("portFallback").IsUndefined() ? true : o.Get("portFallback").ToBoolean().Value();
  p->mark = static_cast<uint32_t>(mark);
  p->timeoutMs = static_cast<int>(timeoutMs);
  return true;
}

namespace {

// connectUpstream(options) → Promise<{ fd, localPort, portFellBack }>: a connected,
// non-blocking TCP socket for `new net.Socket({ fd })`.
Napi::Value ConnectUpstream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    ArgError(env, "connectUpstream expects an options object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ConnectParams params;
  if (!ParseConnectOptions(env, info[0], &params)) return env.Undefined();
  return PendingConnect::Begin(env, params);
}

// setNoDelay(fd): TCP_NODELAY on an upstream fd that never becomes a Node socket.
Napi::Value SetNoDelay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t value = 0;
  if (info.Length() < 1 || !IntArg(info[0], "fd", 0, INT_MAX, &value)) {
    if (info.Length() < 1) ArgError(env, "setNoDelay(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = static_cast<int>(value);
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    ErrnoError(env, errno, "setsockopt TCP_NODELAY").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// discardInput(fd) → bytes dropped: reads and drops what the peer sent and nobody read,
// so that closing the socket sends an orderly FIN, not the reset the kernel answers unread
// bytes with. Never blocks.
Napi::Value DiscardInput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t value = 0;
  if (info.Length() < 1) {
    ArgError(env, "discardInput(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!IntArg(info[0], "fd", 0, INT_MAX, &value)) return env.Undefined();
  int fd = static_cast<int>(value);
  static char sink[1 << 16];
  double dropped = 0;
  for (;;) {
    // MSG_TRUNC on TCP drops the bytes without copying them.
    ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT | MSG_TRUNC);
    if (n > 0) {
      dropped += static_cast<double>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      ErrnoError(env, errno, "recv").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    break;
  }
  return Napi::Number::New(env, dropped);
}

}  // namespace

void InitConnect(Napi::Env env, Napi::Object exports) {
  exports.Set("discardInput", Napi::Function::New(env, DiscardInput, "discardInput"));
  exports.Set("setNoDelay", Napi::Function::New(env, SetNoDelay, "setNoDelay"));
  exports.Set("connectUpstream", Napi::Function::New(env, ConnectUpstream, "connectUpstream"));
}

}  // namespace traffic
