// The splice pump: moves bytes between two connected sockets in the kernel (splice through
// a pipe pair) on shared epoll worker threads, optionally making the upstream connection
// itself first (native/connect.cc starts it). Thin: what an ending means to an operator
// is src/forward/'s.
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

namespace {

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
  // False when the pump made the upstream connection and it never completed.
  bool connected = true;
  int localPort = 0;
  bool portFellBack = false;
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
  // When the pump makes the upstream connection itself: until the handshake completes
  // nothing is spliced. Both fds are the pump's own (duplicates or its connect) either way.
  bool connecting = false;
  // The worker starts that connection when it takes the pump (Begin), with these options.
  bool startConnect = false;
  ConnectParams connectParams;
  bool noDelay = false;
  int startErr = 0;
  const char* startSyscall = "connect";
  bool portFellBack = false;
  int localPort = 0;
  // The connect timeout (0: the kernel's own); the deadline is set when the worker takes the pump.
  int connectTimeoutMs = 0;
  bool hasDeadline = false;
  std::multimap<std::chrono::steady_clock::time_point, Pump*>::iterator deadline;
};

constexpr size_t kChunk = 1 << 20;
// Rounds of splicing one pump may take before the worker turns to the others.
constexpr int kFairRounds = 16;
constexpr size_t kMaxPooledPipes = 64;
constexpr unsigned kMaxWorkers = 4;
// How long an idle worker keeps its pooled pipes.
constexpr std::chrono::milliseconds kIdlePoolMs{300};

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

  // A wake-up is written only when the queues were empty: otherwise one is already on its
  // way (the worker empties them only after reading the eventfd), and each write can make
  // the scheduler switch to the worker in the middle of the JS thread's turn.
  void Add(Pump* pump) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      wake = incoming_.empty() && stops_.empty();
      incoming_.push_back(pump);
    }
    if (wake) Wake();
  }

  void RequestStop(std::shared_ptr<PumpState> state) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      wake = incoming_.empty() && stops_.empty();
      stops_.push_back(std::move(state));
    }
    if (wake) Wake();
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
      int n = epoll_wait(epollFd_, events, 256, WaitMs());
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
            r->syscall = p->connecting && end == &p->endB ? "connect" : "recv";
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
      ExpireConnects();
      TrimIdlePool();
      for (Pump* p : ended_) delete p;
      ended_.clear();
    }
    Shutdown();
  }

  // Moves what it can without blocking; false on an error (result filled in). A direction
  // holds a pipe only while bytes are in it: an idle connection costs its two sockets, not
  // four more fds.
  bool Step(Direction& d, int pipeSize, PumpResult& r, bool* progress) {
    if (d.done) return true;
    if (!d.srcEof && d.inPipe == 0) {
      if (d.pipe.r < 0 && !TakePipe(pipeSize, &d.pipe)) {
        r.err = errno;
        r.syscall = "pipe2";
        r.side = "";
        return false;
      }
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
    if (d.inPipe == 0) GivePipe(&d.pipe, true);
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

  // How long epoll may sleep: not at all with busy pumps, else until the next connect deadline.
  int WaitMs() const {
    if (!ready_.empty()) return 0;
    auto next = deadlines_.empty() ? std::chrono::steady_clock::time_point::max() : deadlines_.begin()->first;
    if (live_.empty() && !pool_.empty()) next = std::min(next, idleSince_ + kIdlePoolMs);
    if (next == std::chrono::steady_clock::time_point::max()) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - std::chrono::steady_clock::now()).count();
    return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left + 1, 1 << 30));
  }

  // A worker with nothing to pump keeps no pipes for long: after a burst the process's
  // fds return to what they were.
  void TrimIdlePool() {
    if (!live_.empty() || pool_.empty() || std::chrono::steady_clock::now() < idleSince_ + kIdlePoolMs) return;
    for (PipePair& p : pool_) {
      close(p.r);
      close(p.w);
    }
    pool_.clear();
  }

  void ExpireConnects() {
    auto now = std::chrono::steady_clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      Pump* p = deadlines_.begin()->second;
      ClearDeadline(p);
      if (p->ended || !p->connecting) continue;
      PumpResult* r = NewResult(p);
      r->err = ETIMEDOUT;
      r->syscall = "connect";
      r->side = "b";
      End(p, r);
    }
  }

  void ClearDeadline(Pump* p) {
    if (!p->hasDeadline) return;
    deadlines_.erase(p->deadline);
    p->hasDeadline = false;
  }

  // True once the handshake is done; false while it runs or when it failed (then ended).
  bool Connected(Pump* p) {
    if (!p->connecting) return true;
    pollfd pf{p->endB.fd, POLLOUT, 0};
    if (poll(&pf, 1, 0) <= 0 || pf.revents == 0) return false;
    int err = ConnectError(p->endB.fd);
    if (err != 0) {
      PumpResult* r = NewResult(p);
      r->err = err;
      r->syscall = "connect";
      r->side = "b";
      End(p, r);
      return false;
    }
    p->connecting = false;
    ClearDeadline(p);
    p->localPort = LocalPortOf(p->endB.fd);
    if (p->noDelay) {
      int one = 1;
      setsockopt(p->endB.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return true;
  }

  void Begin(Pump* p) {
    live_.insert(p);
    p->state->pump = p;
    if (p->startConnect) {
      ConnectStart started = StartConnect(p->connectParams, SOCK_STREAM);
      p->connecting = started.fd >= 0;
      p->startErr = started.err;
      p->startSyscall = started.syscall;
      p->portFellBack = started.fellBack;
      p->endB.fd = started.fd;
    }
    if (p->startErr != 0) {
      // The connect failed before it could start (bind, options): nothing to pump.
      PumpResult* r = NewResult(p);
      r->err = p->startErr;
      r->syscall = p->startSyscall;
      r->side = "b";
      End(p, r);
      return;
    }
    p->ab.src = p->endA.fd;
    p->ab.dst = p->endB.fd;
    p->ba.src = p->endB.fd;
    p->ba.dst = p->endA.fd;
    p->ab.counter = &p->state->aToB;
    p->ba.counter = &p->state->bToA;
    p->ab.srcName = p->ba.dstName = "a";
    p->ab.dstName = p->ba.srcName = "b";
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
    if (p->connecting && p->connectTimeoutMs > 0) {
      p->deadline = deadlines_.emplace(std::chrono::steady_clock::now() + std::chrono::milliseconds(p->connectTimeoutMs), p);
      p->hasDeadline = true;
    }
    Process(p);
  }

  void Process(Pump* p) {
    if (!Connected(p)) return;
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
      if (ok && p->initialSent == p->initial.size()) ok = Step(p->ab, p->pipeSize, scratch, &progress);
      if (ok) ok = Step(p->ba, p->pipeSize, scratch, &progress);
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
    if (live_.empty()) idleSince_ = std::chrono::steady_clock::now();
    // The fds leave the epoll set before they close: the set would otherwise keep them until
    // every duplicate of the socket is gone.
    if (p->registeredA) epoll_ctl(epollFd_, EPOLL_CTL_DEL, p->endA.fd, nullptr);
    if (p->registeredB) epoll_ctl(epollFd_, EPOLL_CTL_DEL, p->endB.fd, nullptr);
    // A pipe still holding bytes is closed; an empty one serves the next pump.
    GivePipe(&p->ab.pipe, p->ab.inPipe == 0);
    GivePipe(&p->ba.pipe, p->ba.inPipe == 0);
    if (r->err != 0 && !r->side.empty() && !p->connecting && p->startErr == 0) {
      // Pass a reset on: the other socket's close sends RST instead of FIN.
      linger hard{1, 0};
      setsockopt(r->side == "a" ? p->endB.fd : p->endA.fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
    r->aToB = p->state->aToB.load();
    r->bToA = p->state->bToA.load();
    r->connected = !p->connecting && p->startErr == 0;
    r->localPort = p->localPort;
    r->portFellBack = p->portFellBack;
    ClearDeadline(p);
    CloseEnds(p);
    // The queue is unbounded: this never blocks the worker. It fails only once the
    // environment is going away, and then nobody is left to tell.
    if (tsfn_.NonBlockingCall(r) != napi_ok) delete r;
    ended_.push_back(p);
  }

  // Both sockets are the pump's own duplicates: closing them here leaves JS's fds alone.
  static void CloseEnds(Pump* p) {
    for (Endpoint* e : {&p->endA, &p->endB}) {
      if (e->fd >= 0) close(e->fd);
      e->fd = -1;
    }
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
      CloseEnds(p);
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
  std::multimap<std::chrono::steady_clock::time_point, Pump*> deadlines_;
  std::chrono::steady_clock::time_point idleSince_ = std::chrono::steady_clock::now();
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
    // All workers start with the first pump: the process's threads and fds are then the
    // same whatever the load, so they are easy to check for leaks.
    while (workers.size() < want) {
      auto w = std::make_unique<PumpWorker>(tsfn);
      *err = w->Start();
      if (*err != 0) {
        if (workers.empty()) return nullptr;
        *err = 0;
        break;
      }
      workers.push_back(std::move(w));
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

  // new SplicePump(fdA, fdB | connectOptions, pipeSize, initialForB,
  //                callback(err, { aToB, bToA, stopped, connected, localPort, portFellBack }))
  // With connect options (those of connectUpstream, plus noDelay) the pump makes the
  // upstream connection itself, owns that socket and closes it at the end; a failed
  // connect comes back through the callback with `connected: false`.
  explicit SplicePump(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SplicePump>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[3].IsBuffer() || !info[4].IsFunction()) {
      ArgError(env, "SplicePump(fdA, fdB | connectOptions, pipeSize, initialForB, callback)").ThrowAsJavaScriptException();
      return;
    }
    bool connects = info[1].IsObject();
    int64_t fdA = 0, fdB = -1, size = 0;
    if (!IntArg(info[0], "fdA", 0, INT_MAX, &fdA) || (!connects && !IntArg(info[1], "fdB", 0, INT_MAX, &fdB)) ||
        !IntArg(info[2], "pipeSize", 0, 1 << 30, &size)) {
      return;
    }
    int a = static_cast<int>(fdA);
    int b = static_cast<int>(fdB);
    int pipeSize = static_cast<int>(size);
    int type = 0;
    socklen_t len = sizeof type;
    for (int fd : {a, b}) {
      if (fd == -1 && connects) continue;
      if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        ErrnoError(env, errno, "getsockopt SO_TYPE").ThrowAsJavaScriptException();
        return;
      }
      if (type != SOCK_STREAM) {
        ArgError(env, "SplicePump needs stream sockets").ThrowAsJavaScriptException();
        return;
      }
    }
    if (a == b) {
      ArgError(env, "SplicePump needs two different sockets").ThrowAsJavaScriptException();
      return;
    }
    ConnectParams params;
    bool noDelay = false;
    if (connects) {
      if (!ParseConnectOptions(env, info[1], &params)) return;
      noDelay = info[1].As<Napi::Object>().Get("noDelay").ToBoolean().Value();
    }
    PumpEngine* engine = EngineOf(env);
    int err = 0;
    PumpWorker* worker = engine->Pick(env, &err);
    if (worker == nullptr) {
      ErrnoError(env, err, "pump worker").ThrowAsJavaScriptException();
      return;
    }
    // The pump works on its own duplicates: when JS closes its fd (a destroyed socket), the
    // number may go to the next accepted socket at once, and a pump still using that number
    // would move bytes between strangers. Only the pump closes its duplicates, at its end.
    int ownA = fcntl(a, F_DUPFD_CLOEXEC, 0);
    if (ownA < 0) {
      ErrnoError(env, errno, "dup").ThrowAsJavaScriptException();
      return;
    }
    int ownB = -1;
    if (!connects) {
      ownB = fcntl(b, F_DUPFD_CLOEXEC, 0);
      if (ownB < 0) {
        int e = errno;
        close(ownA);
        ErrnoError(env, e, "dup").ThrowAsJavaScriptException();
        return;
      }
    }
    a = ownA;
    b = ownB;
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
    if (connects) {
      // Not here: socket(), bind and connect() would cost the JS thread, and towards a
      // local or veth peer the kernel runs the handshake's first packets inside connect().
      pump->startConnect = true;
      pump->connectParams = params;
      pump->noDelay = noDelay;
      pump->connectTimeoutMs = params.timeoutMs;
    }
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
    out.Set("connected", r->connected);
    out.Set("localPort", r->localPort);
    out.Set("portFellBack", r->portFellBack);
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

}  // namespace

void InitSplicePump(Napi::Env env, Napi::Object exports) { exports.Set("SplicePump", SplicePump::Define(env)); }

}  // namespace traffic
