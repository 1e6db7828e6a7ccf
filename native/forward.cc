// Upstream sockets Node cannot make (bound to the client's address with IP_TRANSPARENT,
// marked with SO_MARK) and a kernel-side byte pump between two connected sockets (splice
// through a pipe pair, on shared epoll worker threads). Thin: the policy (when to use them, what
// an error means to an operator) lives in src/forward/.
#include "forward.h"

#include <arpa/inet.h>
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
#include <unordered_set>
#include <vector>
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
//
// Pumps run on a few shared worker threads (one per core, at most kMaxWorkers), each an
// epoll loop over the sockets of its pumps: starting a pump costs a wake-up and two
// epoll registrations, not a thread, and pipes are reused from a per-worker pool.

class SplicePump;

struct PumpResult {
  uint64_t aToB = 0;
  uint64_t bToA = 0;
  int err = 0;
  std::string syscall;
  // "a" or "b": which socket the error came from.
  std::string side;
  bool stopped = false;
  // The JS handle to call back; only touched on the JS thread.
  SplicePump* owner = nullptr;
};

struct Pump;

// Shared by the JS handle and the worker: what JS may read or request while it runs.
struct PumpState {
  std::atomic<uint64_t> aToB{0};
  std::atomic<uint64_t> bToA{0};
  // The worker's record of this pump while it runs; null once it has ended. Worker thread only.
  Pump* pump = nullptr;
};

void DeliverPumpResult(Napi::Env env, Napi::Function callback, std::nullptr_t* context, PumpResult* r);
using PumpTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, PumpResult, DeliverPumpResult>;

struct PipePair {
  int r = -1;
  int w = -1;
  int size = 0;
};

// One direction: src → pipe → dst.
struct Direction {
  int src = -1;
  int dst = -1;
  PipePair pipe;
  size_t inPipe = 0;
  bool srcEof = false;
  bool done = false;
  std::atomic<uint64_t>* counter = nullptr;
  const char* srcName = "";
  const char* dstName = "";
};

struct Pump;
// What an epoll event points at: one of a pump's two sockets.
struct Endpoint {
  Pump* pump;
  int fd;
};

struct Pump {
  std::shared_ptr<PumpState> state;
  SplicePump* owner = nullptr;
  int pipeSize = 0;
  // Bytes for b before anything is spliced: a PROXY header and the client's replayed bytes.
  std::string initial;
  size_t initialSent = 0;
  Direction ab;
  Direction ba;
  Endpoint endA{nullptr, -1};
  Endpoint endB{nullptr, -1};
  bool registeredA = false;
  bool registeredB = false;
  bool ended = false;
  bool queued = false;
};

constexpr size_t kChunk = 1 << 20;
// Rounds of splicing one pump may take before the worker turns to the others.
constexpr int kFairRounds = 16;
constexpr size_t kMaxPooledPipes = 64;
constexpr unsigned kMaxWorkers = 4;

// Moves what it can without blocking; false on an error (result filled in).
bool Step(Direction& d, PumpResult& r, bool* progress) {
  if (d.done) return true;
  if (!d.srcEof && d.inPipe == 0) {
    ssize_t n = splice(d.src, nullptr, d.pipe.w, nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe += static_cast<size_t>(n);
      *progress = true;
    } else if (n == 0) {
      d.srcEof = true;
      *progress = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      r.err = errno;
      r.syscall = "splice";
      r.side = d.srcName;
      return false;
    }
  }
  while (d.inPipe > 0) {
    ssize_t n = splice(d.pipe.r, nullptr, d.dst, nullptr, d.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe -= static_cast<size_t>(n);
      d.counter->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      *progress = true;
    } else if (n < 0 && errno == EAGAIN) {
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
  if (d.srcEof && d.inPipe == 0) {
    // Half-close: the peer's FIN goes on, the other direction keeps running.
    if (shutdown(d.dst, SHUT_WR) != 0 && errno != ENOTCONN) {
      r.err = errno;
      r.syscall = "shutdown";
      r.side = d.dstName;
      return false;
    }
    d.done = true;
  }
  return true;
}

class PumpWorker {
 public:
  explicit PumpWorker(PumpTsfn tsfn) : tsfn_(tsfn) {}
  PumpWorker(const PumpWorker&) = delete;
  PumpWorker& operator=(const PumpWorker&) = delete;

  ~PumpWorker() {
    if (thread_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        quit_ = true;
      }
      Wake();
      thread_.join();
    }
    if (wakeFd_ >= 0) close(wakeFd_);
    if (epollFd_ >= 0) close(epollFd_);
  }

  // 0, or the errno of what failed.
  int Start() {
    epollFd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epollFd_ < 0) return errno;
    wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakeFd_ < 0) return errno;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    if (epoll_ctl(epollFd_, EPOLL_CTL_ADD, wakeFd_, &ev) != 0) return errno;
    try {
      thread_ = std::thread(&PumpWorker::Run, this);
    } catch (const std::exception&) {
      return EAGAIN;
    }
    return 0;
  }

  void Add(Pump* pump) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      incoming_.push_back(pump);
    }
    Wake();
  }

  void RequestStop(std::shared_ptr<PumpState> state) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stops_.push_back(std::move(state));
    }
    Wake();
  }

 private:
  void Wake() {
    uint64_t one = 1;
    ssize_t ignored = write(wakeFd_, &one, sizeof one);
    (void)ignored;
  }

  void Run() {
    epoll_event events[256];
    std::vector<Pump*> incoming;
    std::vector<std::shared_ptr<PumpState>> stops;
    for (;;) {
      int n = epoll_wait(epollFd_, events, 256, ready_.empty() ? -1 : 0);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == nullptr) {
          uint64_t count;
          ssize_t ignored = read(wakeFd_, &count, sizeof count);
          (void)ignored;
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (quit_) return Shutdown();
            incoming.swap(incoming_);
            stops.swap(stops_);
          }
          for (Pump* p : incoming) Begin(p);
          incoming.clear();
          for (auto& st : stops) {
            if (st->pump != nullptr && !st->pump->ended) {
              PumpResult* r = NewResult(st->pump);
              r->stopped = true;
              End(st->pump, r);
            }
          }
          stops.clear();
          continue;
        }
        auto* end = static_cast<Endpoint*>(events[i].data.ptr);
        Pump* p = end->pump;
        if (p->ended) continue;
        if ((events[i].events & EPOLLERR) != 0) {
          // An error on a socket neither direction is using now would otherwise wait for
          // the next byte: read it here.
          int soerr = 0;
          socklen_t len = sizeof soerr;
          getsockopt(end->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
          if (soerr != 0) {
            PumpResult* r = NewResult(p);
            r->err = soerr;
            r->syscall = "recv";
            r->side = end == &p->endA ? "a" : "b";
            End(p, r);
            continue;
          }
        }
        Process(p);
      }
      if (!ready_.empty()) {
        std::vector<Pump*> again;
        again.swap(ready_);
        for (Pump* p : again) {
          p->queued = false;
          if (!p->ended) Process(p);
        }
      }
      for (Pump* p : ended_) delete p;
      ended_.clear();
    }
    Shutdown();
  }

  void Begin(Pump* p) {
    live_.insert(p);
    p->state->pump = p;
    p->ab.src = p->endA.fd;
    p->ab.dst = p->endB.fd;
    p->ba.src = p->endB.fd;
    p->ba.dst = p->endA.fd;
    p->ab.counter = &p->state->aToB;
    p->ba.counter = &p->state->bToA;
    p->ab.srcName = p->ba.dstName = "a";
    p->ab.dstName = p->ba.srcName = "b";
    if (!TakePipe(p->pipeSize, &p->ab.pipe) || !TakePipe(p->pipeSize, &p->ba.pipe)) {
      PumpResult* r = NewResult(p);
      r->err = errno;
      r->syscall = "pipe2";
      End(p, r);
      return;
    }
    // Edge-triggered, both ways, for the pump's whole life: no epoll_ctl per wake-up.
    for (Endpoint* e : {&p->endA, &p->endB}) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
      ev.data.ptr = e;
      if (epoll_ctl(epollFd_, EPOLL_CTL_ADD, e->fd, &ev) != 0) {
        PumpResult* r = NewResult(p);
        r->err = errno;
        r->syscall = "epoll_ctl";
        End(p, r);
        return;
      }
      (e == &p->endA ? p->registeredA : p->registeredB) = true;
    }
    Process(p);
  }

  void Process(Pump* p) {
    PumpResult scratch;
    for (int round = 0; round < kFairRounds; round++) {
      bool progress = false;
      bool ok = true;
      while (p->initialSent < p->initial.size()) {
        ssize_t n = send(p->endB.fd, p->initial.data() + p->initialSent, p->initial.size() - p->initialSent, MSG_NOSIGNAL);
        if (n > 0) {
          p->initialSent += static_cast<size_t>(n);
          progress = true;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) {
          scratch.err = errno;
          scratch.syscall = "send";
          scratch.side = "b";
          ok = false;
        }
        break;
      }
      if (ok && p->initialSent == p->initial.size()) ok = Step(p->ab, scratch, &progress);
      if (ok) ok = Step(p->ba, scratch, &progress);
      if (!ok || (p->ab.done && p->ba.done)) {
        PumpResult* r = NewResult(p);
        r->err = scratch.err;
        r->syscall = scratch.syscall;
        r->side = scratch.side;
        End(p, r);
        return;
      }
      if (!progress) return;
    }
    // Still busy: the edge may not come again, so it goes round once more after the others.
    if (!p->queued) {
      p->queued = true;
      ready_.push_back(p);
    }
  }

  PumpResult* NewResult(Pump* p) {
    auto* r = new PumpResult();
    r->owner = p->owner;
    return r;
  }

  void End(Pump* p, PumpResult* r) {
    p->ended = true;
    p->state->pump = nullptr;
    live_.erase(p);
    // JS closes these fds after the callback: they must leave the epoll set first.
    if (p->registeredA) epoll_ctl(epollFd_, EPOLL_CTL_DEL, p->endA.fd, nullptr);
    if (p->registeredB) epoll_ctl(epollFd_, EPOLL_CTL_DEL, p->endB.fd, nullptr);
    // A pipe still holding bytes is closed; an empty one serves the next pump.
    GivePipe(&p->ab.pipe, p->ab.inPipe == 0);
    GivePipe(&p->ba.pipe, p->ba.inPipe == 0);
    if (r->err != 0 && !r->side.empty()) {
      // Pass a reset on: the other socket's close sends RST instead of FIN.
      linger hard{1, 0};
      setsockopt(r->side == "a" ? p->endB.fd : p->endA.fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
    r->aToB = p->state->aToB.load();
    r->bToA = p->state->bToA.load();
    // The queue is unbounded: this never blocks the worker. It fails only once the
    // environment is going away, and then nobody is left to tell.
    if (tsfn_.NonBlockingCall(r) != napi_ok) delete r;
    ended_.push_back(p);
  }

  bool TakePipe(int size, PipePair* out) {
    for (size_t i = pool_.size(); i-- > 0;) {
      if (pool_[i].size == size) {
        *out = pool_[i];
        pool_[i] = pool_.back();
        pool_.pop_back();
        return true;
      }
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
    // A bigger pipe moves more per wake-up; the kernel may refuse (pipe-max-size): keep the default then.
    if (size > 0) fcntl(fds[1], F_SETPIPE_SZ, size);
    *out = PipePair{fds[0], fds[1], size};
    return true;
  }

  void GivePipe(PipePair* p, bool empty) {
    if (p->r < 0) return;
    if (empty && pool_.size() < kMaxPooledPipes) {
      pool_.push_back(*p);
    } else {
      close(p->r);
      close(p->w);
    }
    *p = PipePair{};
  }

  // The environment is going away: its sockets are closed by Node, the results have
  // nobody to go to.
  void Shutdown() {
    for (Pump* p : live_) {
      GivePipe(&p->ab.pipe, false);
      GivePipe(&p->ba.pipe, false);
      delete p;
    }
    live_.clear();
    for (PipePair& p : pool_) {
      close(p.r);
      close(p.w);
    }
    pool_.clear();
    for (Pump* p : ended_) delete p;
    ended_.clear();
  }

  PumpTsfn tsfn_;
  int epollFd_ = -1;
  int wakeFd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  bool quit_ = false;
  std::vector<Pump*> incoming_;
  std::vector<std::shared_ptr<PumpState>> stops_;
  // Worker thread only:
  std::vector<Pump*> ready_;
  std::vector<Pump*> ended_;
  std::vector<PipePair> pool_;
  std::unordered_set<Pump*> live_;
};

// Per environment: the workers, the one thread-safe function that carries results back,
// and how many pumps run (the function keeps the event loop alive only while some do).
struct PumpEngine {
  PumpTsfn tsfn;
  bool hasTsfn = false;
  std::vector<std::unique_ptr<PumpWorker>> workers;
  size_t next = 0;
  size_t running = 0;

  ~PumpEngine() {
    workers.clear();  // joins every worker thread
    if (hasTsfn) tsfn.Release();
  }

  // A worker for the next pump, round robin; null with `err` set when none can start.
  PumpWorker* Pick(Napi::Env env, int* err) {
    if (!hasTsfn) {
      tsfn = PumpTsfn::New(env, "traffic-splice-pump", 0, 1);
      tsfn.Unref(env);
      hasTsfn = true;
    }
    // hardware_concurrency() reads /sys on every call: once is enough.
    static const unsigned cores = std::thread::hardware_concurrency();
    size_t want = cores == 0 ? 1 : std::min(cores, kMaxWorkers);
    if (workers.size() < want && (running >= workers.size() || workers.empty())) {
      auto w = std::make_unique<PumpWorker>(tsfn);
      *err = w->Start();
      if (*err != 0) {
        if (workers.empty()) return nullptr;
        *err = 0;
      } else {
        workers.push_back(std::move(w));
      }
    }
    return workers[next++ % workers.size()].get();
  }
};

PumpEngine* EngineOf(Napi::Env env) {
  auto* engine = env.GetInstanceData<PumpEngine>();
  if (engine == nullptr) {
    engine = new PumpEngine();
    env.SetInstanceData(engine);
  }
  return engine;
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
    if (a == b) {
      ArgError(env, "SplicePump needs two different sockets").ThrowAsJavaScriptException();
      return;
    }
    PumpEngine* engine = EngineOf(env);
    int err = 0;
    PumpWorker* worker = engine->Pick(env, &err);
    if (worker == nullptr) {
      ErrnoError(env, err, "pump worker").ThrowAsJavaScriptException();
      return;
    }
    callback_ = Napi::Persistent(info[4].As<Napi::Function>());
    state_ = std::make_shared<PumpState>();
    worker_ = worker;
    auto* pump = new Pump();
    pump->state = state_;
    pump->owner = this;
    pump->pipeSize = pipeSize;
    Napi::Buffer<char> initial = info[3].As<Napi::Buffer<char>>();
    pump->initial.assign(initial.Data(), initial.Length());
    pump->endA = Endpoint{pump, a};
    pump->endB = Endpoint{pump, b};
    // Kept alive until its result is delivered, even when JS drops the handle.
    Ref();
    if (engine->running++ == 0) engine->tsfn.Ref(env);
    worker->Add(pump);
  }

  void Deliver(Napi::Env env, PumpResult* r) {
    PumpEngine* engine = env.GetInstanceData<PumpEngine>();
    if (engine != nullptr && --engine->running == 0) engine->tsfn.Unref(env);
    running_ = false;
    Napi::FunctionReference callback = std::move(callback_);
    Unref();
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

 private:
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (running_ && worker_ != nullptr) worker_->RequestStop(state_);
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
  PumpWorker* worker_ = nullptr;
  Napi::FunctionReference callback_;
  bool running_ = true;
};

void DeliverPumpResult(Napi::Env env, Napi::Function, std::nullptr_t*, PumpResult* r) {
  std::unique_ptr<PumpResult> owned(r);
  if (env == nullptr || r->owner == nullptr) return;
  r->owner->Deliver(env, r);
}

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
