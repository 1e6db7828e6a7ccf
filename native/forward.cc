// Upstream sockets Node cannot make (bound to the client's address with IP_TRANSPARENT,
// marked with SO_MARK) and a kernel-side byte pump between two connected sockets (splice
// through a pipe pair on a thread of its own). Thin: the policy (when to use them, what
// an error means to an operator) lives in src/forward/.
#include "forward.h"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

namespace traffic {
namespace {

std::string Errname(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? std::string(name) : "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall) {
  Napi::Error error = Napi::Error::New(env, syscall + " failed: " + Errname(err) + " (" + std::strerror(err) + ")");
  error.Set("code", Napi::String::New(env, Errname(err)));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

Napi::Error ArgError(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  return error;
}

// Fills `ss` from an address text and port; false when the text is no IP address.
bool ToSockaddr(const std::string& text, int port, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof *ss);
  auto* sin = reinterpret_cast<sockaddr_in*>(ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
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

// connectUpstream on a libuv pool thread: the connect may take up to its timeout, and a
// blocking wait must not stall the event loop.
class ConnectWorker : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, sockaddr_storage remote, socklen_t remoteLen, bool bindLocal, sockaddr_storage local,
                socklen_t localLen, bool transparent, uint32_t mark, bool portFallback, int timeoutMs)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        remote_(remote),
        remoteLen_(remoteLen),
        bindLocal_(bindLocal),
        local_(local),
        localLen_(localLen),
        transparent_(transparent),
        mark_(mark),
        portFallback_(portFallback),
        timeoutMs_(timeoutMs) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    bool keepPort = bindLocal_ && PortOf(local_) != 0;
    if (Attempt(keepPort)) return;
    // The client's own port is taken on this host (or the 4-tuple is): any port will do.
    if (keepPort && portFallback_ && (err_ == EADDRINUSE || err_ == EADDRNOTAVAIL)) {
      fellBack_ = true;
      Attempt(false);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (fd_ < 0) {
      deferred_.Reject(ErrnoError(env, err_, syscall_).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", fd_);
    out.Set("localPort", localPort_);
    out.Set("portFellBack", fellBack_);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  bool Fail(const char* syscall, int fd) {
    err_ = errno;
    syscall_ = syscall;
    if (fd >= 0) close(fd);
    fd_ = -1;
    return false;
  }

  bool Attempt(bool keepPort) {
    int family = remote_.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return Fail("socket", -1);
    int one = 1;
    if (transparent_) {
      int rc = family == AF_INET ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one)
                                 : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one);
      if (rc != 0) return Fail(family == AF_INET ? "setsockopt IP_TRANSPARENT" : "setsockopt IPV6_TRANSPARENT", fd);
    }
    if (mark_ != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark_, sizeof mark_) != 0) return Fail("setsockopt SO_MARK", fd);
    if (bindLocal_) {
      sockaddr_storage local = local_;
      if (!keepPort) {
        if (local.ss_family == AF_INET) reinterpret_cast<sockaddr_in&>(local).sin_port = 0;
        else reinterpret_cast<sockaddr_in6&>(local).sin6_port = 0;
        // Port 0 on a foreign address: let connect() pick the port from the full 4-tuple,
        // so many upstream connections of one client never exhaust the ephemeral range.
        setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      }
      if (bind(fd, reinterpret_cast<sockaddr*>(&local), localLen_) != 0) return Fail("bind", fd);
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&remote_), remoteLen_) != 0 && errno != EINPROGRESS) {
      return Fail("connect", fd);
    }
    pollfd p{fd, POLLOUT, 0};
    int rc;
    do {
      rc = poll(&p, 1, timeoutMs_ > 0 ? timeoutMs_ : -1);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return Fail("poll", fd);
    if (rc == 0) {
      errno = ETIMEDOUT;
      return Fail("connect", fd);
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) return Fail("getsockopt SO_ERROR", fd);
    if (soerr != 0) {
      errno = soerr;
      return Fail("connect", fd);
    }
    sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    localPort_ = getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) == 0 ? PortOf(bound) : 0;
    fd_ = fd;
    return true;
  }

  Napi::Promise::Deferred deferred_;
  sockaddr_storage remote_;
  socklen_t remoteLen_;
  bool bindLocal_;
  sockaddr_storage local_;
  socklen_t localLen_;
  bool transparent_;
  uint32_t mark_;
  bool portFallback_;
  int timeoutMs_;
  int fd_ = -1;
  int err_ = 0;
  const char* syscall_ = "connect";
  int localPort_ = 0;
  bool fellBack_ = false;
};

bool GetInt(const Napi::Object& o, const char* key, int64_t min, int64_t max, int64_t fallback, int64_t* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    *out = fallback;
    return true;
  }
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1e300;
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || static_cast<double>(static_cast<int64_t>(d)) != d) {
    ArgError(o.Env(), std::string("options.") + key + " must be an integer from " + std::to_string(min) + " to " +
                          std::to_string(max))
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

// connectUpstream({ address, port, localAddress?, localPort?, transparent?, mark?,
// portFallback?, timeoutMs? }) → Promise<{ fd, localPort, portFellBack }>: a connected,
// non-blocking TCP socket for `new net.Socket({ fd })`.
Napi::Value ConnectUpstream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    ArgError(env, "connectUpstream expects an options object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Get("address").IsString()) {
    ArgError(env, "options.address must be an IP address string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t port = 0, localPort = 0, mark = 0, timeoutMs = 0;
  if (!GetInt(o, "port", 1, 65535, 0, &port) || !GetInt(o, "localPort", 0, 65535, 0, &localPort) ||
      !GetInt(o, "mark", 0, 0xffffffffLL, 0, &mark) || !GetInt(o, "timeoutMs", 0, 86400000, 0, &timeoutMs)) {
    return env.Undefined();
  }
  sockaddr_storage remote, local;
  socklen_t remoteLen = 0, localLen = 0;
  std::string address = o.Get("address").As<Napi::String>().Utf8Value();
  if (!ToSockaddr(address, static_cast<int>(port), &remote, &remoteLen)) {
    ArgError(env, "options.address is not an IP address: " + address.substr(0, 64)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool bindLocal = o.Get("localAddress").IsString();
  std::memset(&local, 0, sizeof local);
  if (bindLocal) {
    std::string text = o.Get("localAddress").As<Napi::String>().Utf8Value();
    if (!ToSockaddr(text, static_cast<int>(localPort), &local, &localLen) || local.ss_family != remote.ss_family) {
      ArgError(env, "options.localAddress must be an IP address of the same family as options.address")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  bool transparent = o.Get("transparent").ToBoolean().Value();
  bool portFallback = o.Get("portFallback").IsUndefined() ? true : o.Get("portFallback").ToBoolean().Value();
  auto* worker = new ConnectWorker(env, remote, remoteLen, bindLocal, local, localLen, transparent,
                                   static_cast<uint32_t>(mark), portFallback, static_cast<int>(timeoutMs));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---- splice pump ----------------------------------------------------------------------

struct PumpResult {
  uint64_t aToB = 0;
  uint64_t bToA = 0;
  int err = 0;
  std::string syscall;
  // "a" or "b": which socket the error came from.
  std::string side;
  bool stopped = false;
};

struct PumpState {
  int a;
  int b;
  int stopFd;
  // Bytes for b before anything is spliced: a PROXY header and the client's replayed bytes.
  std::string initial;
  std::atomic<uint64_t> aToB{0};
  std::atomic<uint64_t> bToA{0};
  PumpState(int a_, int b_) : a(a_), b(b_), stopFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~PumpState() { CloseStop(); }
  // The eventfd goes when the pump ends, not when the JS handle is collected: a busy
  // proxy would otherwise hold one fd per finished connection until the next major GC.
  // The lock keeps a late stop() from writing to a closed (maybe reused) fd number.
  void SignalStop() {
    std::lock_guard<std::mutex> lock(stopMutex);
    if (stopFd < 0) return;
    uint64_t one = 1;
    ssize_t ignored = write(stopFd, &one, sizeof one);
    (void)ignored;
  }
  void CloseStop() {
    std::lock_guard<std::mutex> lock(stopMutex);
    if (stopFd >= 0) close(stopFd);
    stopFd = -1;
  }

 private:
  std::mutex stopMutex;
};

void DeliverPumpResult(Napi::Env env, Napi::Function callback, std::nullptr_t* context, PumpResult* r);
using PumpTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, PumpResult, DeliverPumpResult>;

// One direction: src → pipe → dst.
struct Direction {
  int src;
  int dst;
  int pipe[2] = {-1, -1};
  size_t inPipe = 0;
  bool srcEof = false;
  bool done = false;
  bool wantRead = false;
  bool wantWrite = false;
  std::atomic<uint64_t>* counter;
  const char* srcName;
  const char* dstName;
};

constexpr size_t kChunk = 1 << 20;

// Moves what it can without blocking; false on an error (result filled in).
bool Step(Direction& d, PumpResult& r, bool* progress) {
  d.wantRead = d.wantWrite = false;
  if (d.done) return true;
  if (!d.srcEof && d.inPipe == 0) {
    ssize_t n = splice(d.src, nullptr, d.pipe[1], nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe += static_cast<size_t>(n);
      *progress = true;
    } else if (n == 0) {
      d.srcEof = true;
      *progress = true;
    } else if (errno == EAGAIN) {
      d.wantRead = true;
    } else if (errno != EINTR) {
      r.err = errno;
      r.syscall = "splice";
      r.side = d.srcName;
      return false;
    }
  }
  while (d.inPipe > 0) {
    ssize_t n = splice(d.pipe[0], nullptr, d.dst, nullptr, d.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe -= static_cast<size_t>(n);
      d.counter->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      *progress = true;
    } else if (n < 0 && errno == EAGAIN) {
      d.wantWrite = true;
      break;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      r.err = n < 0 ? errno : EPIPE;
      r.syscall = "splice";
      r.side = d.dstName;
      return false;
    }
  }
  if (d.inPipe == 0 && !d.srcEof && !d.wantRead) d.wantRead = true;
  if (d.srcEof && d.inPipe == 0) {
    // Half-close: the peer's FIN goes on, the other direction keeps running.
    if (shutdown(d.dst, SHUT_WR) != 0 && errno != ENOTCONN) {
      r.err = errno;
      r.syscall = "shutdown";
      r.side = d.dstName;
      return false;
    }
    d.done = true;
    d.wantRead = d.wantWrite = false;
  }
  return true;
}

void RunPump(std::shared_ptr<PumpState> state, PumpTsfn tsfn, int pipeSize) {
  auto* result = new PumpResult();
  Direction ab{state->a, state->b};
  Direction ba{state->b, state->a};
  ab.counter = &state->aToB;
  ba.counter = &state->bToA;
  ab.srcName = "a";
  ab.dstName = "b";
  ba.srcName = "b";
  ba.dstName = "a";
  bool ok = pipe2(ab.pipe, O_CLOEXEC | O_NONBLOCK) == 0 && pipe2(ba.pipe, O_CLOEXEC | O_NONBLOCK) == 0;
  if (!ok) {
    result->err = errno;
    result->syscall = "pipe2";
  } else {
    if (pipeSize > 0) {
      // A bigger pipe moves more per wake-up; the kernel may refuse (pipe-max-size): keep the default then.
      fcntl(ab.pipe[1], F_SETPIPE_SZ, pipeSize);
      fcntl(ba.pipe[1], F_SETPIPE_SZ, pipeSize);
    }
    size_t sent = 0;
    while (sent < state->initial.size() && result->err == 0 && !result->stopped) {
      ssize_t n = send(state->b, state->initial.data() + sent, state->initial.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) {
        result->err = errno;
        result->syscall = "send";
        result->side = "b";
        break;
      }
      pollfd p[2] = {{state->b, POLLOUT, 0}, {state->stopFd, POLLIN, 0}};
      if (poll(p, 2, -1) > 0 && (p[1].revents & POLLIN)) result->stopped = true;
    }
    for (;;) {
      if (result->err != 0 || result->stopped) break;
      bool progress = false;
      if (!Step(ab, *result, &progress) || !Step(ba, *result, &progress)) break;
      if (ab.done && ba.done) break;
      if (progress) continue;
      pollfd p[3];
      short ea = static_cast<short>((ab.wantRead ? POLLIN : 0) | (ba.wantWrite ? POLLOUT : 0));
      short eb = static_cast<short>((ba.wantRead ? POLLIN : 0) | (ab.wantWrite ? POLLOUT : 0));
      // A socket nothing is wanted from is left out, so a peer's final hang-up cannot spin the loop.
      p[0] = {ea != 0 ? state->a : -1, ea, 0};
      p[1] = {eb != 0 ? state->b : -1, eb, 0};
      p[2] = {state->stopFd, POLLIN, 0};
      int rc = poll(p, 3, -1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) {
        result->err = errno;
        result->syscall = "poll";
        break;
      }
      if (p[2].revents & POLLIN) {
        result->stopped = true;
        break;
      }
      bool failed = false;
      for (int i = 0; i < 2; i++) {
        if (p[i].revents & POLLERR) {
          int soerr = 0;
          socklen_t len = sizeof soerr;
          getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
          if (soerr != 0) {
            result->err = soerr;
            result->syscall = "recv";
            result->side = i == 0 ? "a" : "b";
            failed = true;
            break;
          }
        }
      }
      if (failed) break;
    }
  }
  for (int fd : {ab.pipe[0], ab.pipe[1], ba.pipe[0], ba.pipe[1]}) {
    if (fd >= 0) close(fd);
  }
  state->CloseStop();
  if (result->err != 0 && !result->side.empty()) {
    // Pass a reset on: the other socket's close sends RST instead of FIN.
    linger hard{1, 0};
    setsockopt(result->side == "a" ? state->b : state->a, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  }
  result->aToB = state->aToB.load();
  result->bToA = state->bToA.load();
  if (tsfn.BlockingCall(result) != napi_ok) delete result;
  tsfn.Release();
}

void DeliverPumpResult(Napi::Env env, Napi::Function callback, std::nullptr_t*, PumpResult* r) {
  std::unique_ptr<PumpResult> owned(r);
  if (env == nullptr || callback.IsEmpty()) return;
  Napi::Object out = Napi::Object::New(env);
  out.Set("aToB", Napi::Number::New(env, static_cast<double>(r->aToB)));
  out.Set("bToA", Napi::Number::New(env, static_cast<double>(r->bToA)));
  out.Set("stopped", r->stopped);
  Napi::Value error = env.Null();
  if (r->err != 0) {
    Napi::Error e = ErrnoError(env, r->err, r->syscall);
    e.Set("side", Napi::String::New(env, r->side));
    error = e.Value();
  }
  callback.Call({error, out});
}

// The JS handle of a running pump: byte counts so far, and stop().
class SplicePump : public Napi::ObjectWrap<SplicePump> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "SplicePump",
                       {InstanceMethod("stop", &SplicePump::Stop), InstanceMethod("counts", &SplicePump::Counts)});
  }

  // new SplicePump(fdA, fdB, pipeSize, initialForB, callback(err, { aToB, bToA, stopped }))
  explicit SplicePump(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SplicePump>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsBuffer() ||
        !info[4].IsFunction()) {
      ArgError(env, "SplicePump(fdA, fdB, pipeSize, initialForB, callback)").ThrowAsJavaScriptException();
      return;
    }
    int a = info[0].As<Napi::Number>().Int32Value();
    int b = info[1].As<Napi::Number>().Int32Value();
    int pipeSize = info[2].As<Napi::Number>().Int32Value();
    int type = 0;
    socklen_t len = sizeof type;
    for (int fd : {a, b}) {
      if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
        ArgError(env, "SplicePump needs two stream socket fds").ThrowAsJavaScriptException();
        return;
      }
    }
    state_ = std::make_shared<PumpState>(a, b);
    Napi::Buffer<char> initial = info[3].As<Napi::Buffer<char>>();
    state_->initial.assign(initial.Data(), initial.Length());
    if (state_->stopFd < 0) {
      ErrnoError(env, errno, "eventfd").ThrowAsJavaScriptException();
      return;
    }
    PumpTsfn tsfn = PumpTsfn::New(env, info[4].As<Napi::Function>(), "traffic-splice-pump", 0, 1);
    try {
      std::thread(RunPump, state_, tsfn, pipeSize).detach();
    } catch (const std::exception&) {
      tsfn.Release();
      ErrnoError(env, EAGAIN, "pthread_create").ThrowAsJavaScriptException();
    }
  }

 private:
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (state_) state_->SignalStop();
    return info.Env().Undefined();
  }

  Napi::Value Counts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("aToB", Napi::Number::New(env, state_ ? static_cast<double>(state_->aToB.load()) : 0));
    out.Set("bToA", Napi::Number::New(env, state_ ? static_cast<double>(state_->bToA.load()) : 0));
    return out;
  }

  std::shared_ptr<PumpState> state_;
};

// setNoDelay(fd): TCP_NODELAY on an upstream fd that never becomes a Node socket.
Napi::Value SetNoDelay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ArgError(env, "setNoDelay(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    ErrnoError(env, errno, "setsockopt TCP_NODELAY").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace

void InitForward(Napi::Env env, Napi::Object exports) {
  exports.Set("setNoDelay", Napi::Function::New(env, SetNoDelay, "setNoDelay"));
  exports.Set("connectUpstream", Napi::Function::New(env, ConnectUpstream, "connectUpstream"));
  exports.Set("SplicePump", SplicePump::Define(env));
}

}  // namespace traffic
