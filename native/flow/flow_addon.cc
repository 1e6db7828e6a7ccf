// The flow source's native part: loads the BPF program (flow.bpf.c) through its libbpf
// skeleton, reads its ring buffer on a thread and hands batches of raw records to JS
// through a thread-safe function; and the sock_diag fallback (inet_diag dumps and the
// "TCP socket destroyed" multicast groups). It returns raw bytes and plain values; the
// decoding and all policy live in TypeScript (src/flow/).
#include <napi.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <linux/types.h>
// Before the skeleton: its read-only data section is a struct flow_config.
#include "flow.h"

#if HAVE_LIBBPF
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "flow_skel_gen.h"
#else
#define FLOW_SKEL_AVAILABLE 0
#define FLOW_SKEL_MISSING_REASON "libbpf was not found at build time (Debian: apt-get install libbpf-dev pkg-config), then npm rebuild"
#endif

static_assert(sizeof(struct flow_record) % 8 == 0, "records stay 8-byte aligned in the ring");
static_assert(sizeof(struct flow_bytes_record) % 8 == 0, "records stay 8-byte aligned in the ring");

namespace {

constexpr int kAbiVersion = 1;
// Batches waiting for the JS thread; beyond this the batch is dropped and counted.
constexpr size_t kMaxQueuedBatches = 1024;
constexpr size_t kFlushBytes = 256 * 1024;
constexpr int kPollMs = 50;

const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case E2BIG: return "E2BIG";
    case EBUSY: return "EBUSY";
    case ENOTSUP: return "ENOTSUP";
    case ENOSYS: return "ENOSYS";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ENOBUFS: return "ENOBUFS";
    case EAGAIN: return "EAGAIN";
    case ESRCH: return "ESRCH";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EEXIST: return "EEXIST";
    default: return "EIO";
  }
}

Napi::Error SystemError(Napi::Env env, int err, const std::string& syscall, const std::string& what) {
  std::string message = syscall + ": " + std::strerror(err) + (what.empty() ? "" : " (" + what + ")");
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

// A wrong argument from JS: a TypeError with a code, like Node's own argument checks.
Napi::Error ArgError(Napi::Env env, const std::string& message) {
  Napi::TypeError e = Napi::TypeError::New(env, message);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  return e;
}

Napi::Error AlreadyStarted(Napi::Env env) {
  Napi::Error e = Napi::Error::New(env, "already started");
  e.Set("code", Napi::String::New(env, "ERR_ALREADY_STARTED"));
  return e;
}

// An integer number in [min, max]; ToUint32-style wrapping would turn -1 into 65535 or
// 2^32 into 0 and make a wrong filter out of a wrong argument.
bool IsIntIn(const Napi::Value& v, double min, double max) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  return d >= min && d <= max && static_cast<double>(static_cast<int64_t>(d)) == d;
}

// One batch of raw bytes on its way to JS.
struct Batch {
  std::vector<uint8_t> bytes;
  uint32_t records = 0;
};

// A thread that fills batches and delivers them through a thread-safe function. The
// subclass supplies PollOnce(); Stop() joins the thread and releases the function, so
// a stopped reader holds no thread, no fd and no reference on the event loop.
class BatchReader {
 public:
  virtual ~BatchReader() { Stop(); }

  void StartThread(Napi::Env env, Napi::Function onBatch, const char* name) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, onBatch, name, kMaxQueuedBatches, 1);
    running_ = true;
    stop_ = false;
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() {
    if (!running_) return;
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    Flush();
    tsfn_.Release();
    running_ = false;
    Close();
  }

  bool running() const { return running_; }
  uint64_t js_lost() const { return js_lost_.load(); }
  uint64_t delivered() const { return delivered_.load(); }
  uint64_t batches() const { return batches_.load(); }

 protected:
  // Waits up to kPollMs for input and appends what arrived with Append().
  virtual void PollOnce() = 0;
  // Frees the reader's kernel resources (after the thread is gone).
  virtual void Close() = 0;

  void Append(const void* data, size_t size, uint32_t records) {
    auto bytes = static_cast<const uint8_t*>(data);
    pending_.bytes.insert(pending_.bytes.end(), bytes, bytes + size);
    pending_.records += records;
    if (pending_.bytes.size() >= kFlushBytes) Flush();
  }

  void Flush() {
    if (pending_.bytes.empty()) return;
    auto* batch = new Batch(std::move(pending_));
    pending_ = Batch();
    uint32_t records = batch->records;
    napi_status status = tsfn_.NonBlockingCall(batch, [](Napi::Env env, Napi::Function fn, Batch* b) {
      std::unique_ptr<Batch> owned(b);
      if (env == nullptr || fn.IsEmpty()) return;
      Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::Copy(env, owned->bytes.data(), owned->bytes.size());
      // A throwing JS handler must not take the process down from a native callback:
      // the error is handed back to JS as a warning instead.
      try {
        fn.Call({buffer});
      } catch (const Napi::Error& e) {
        Napi::Value process = env.Global().Get("process");
        if (process.IsObject()) {
          Napi::Value warn = process.As<Napi::Object>().Get("emitWarning");
          if (warn.IsFunction()) {
            try {
              warn.As<Napi::Function>().Call(process, {Napi::String::New(env, std::string("flow batch handler threw: ") + e.Message())});
            } catch (const Napi::Error&) {
            }
          }
        }
      }
    });
    if (status != napi_ok) {
      // The JS side is behind (queue full) or closing: count what it will never see.
      delete batch;
      js_lost_ += records;
    } else {
      delivered_ += records;
      batches_ += 1;
    }
  }

  std::atomic<bool> stop_{false};

 private:
  void Run() {
    while (!stop_.load()) {
      PollOnce();
      Flush();
    }
  }

  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  bool running_ = false;
  Batch pending_;
  std::atomic<uint64_t> js_lost_{0};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> batches_{0};
};

uint64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// ---------------------------------------------------------------------------------------
// libbpf: messages are kept (the last ones explain a failed load) instead of printed.

#if HAVE_LIBBPF
std::mutex g_log_mutex;
std::string g_log;

int CaptureLibbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof line, format, args);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_log.append(line);
  if (g_log.size() > 16384) g_log.erase(0, g_log.size() - 16384);
  return n;
}

std::string TakeLog() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string out;
  out.swap(g_log);
  return out;
}

bool VmlinuxHasTracepoint(const struct btf* vmlinux, const char* name) {
  if (vmlinux == nullptr) return false;
  std::string type = std::string("btf_trace_") + name;
  return btf__find_by_name_kind(vmlinux, type.c_str(), BTF_KIND_TYPEDEF) > 0;
}
#endif

// probe(): which pieces of eBPF capture this kernel and this process can use.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("skeleton", Napi::Boolean::New(env, FLOW_SKEL_AVAILABLE != 0));
#if !FLOW_SKEL_AVAILABLE
  out.Set("skeletonReason", Napi::String::New(env, FLOW_SKEL_MISSING_REASON));
#endif
#if HAVE_LIBBPF
  out.Set("libbpf", Napi::Boolean::New(env, true));
  libbpf_set_print(CaptureLibbpfLog);
  struct btf* vmlinux = btf__load_vmlinux_btf();
  out.Set("btf", Napi::Boolean::New(env, vmlinux != nullptr));
  Napi::Object tps = Napi::Object::New(env);
  for (const char* name : {"inet_sock_set_state", "sock_send_length", "sock_recv_length"}) {
    tps.Set(name, Napi::Boolean::New(env, VmlinuxHasTracepoint(vmlinux, name)));
  }
  out.Set("tracepoints", tps);
  if (vmlinux != nullptr) btf__free(vmlinux);
  // Map probes create a map: they need CAP_BPF and return <0 (EPERM) without it.
  int ringbuf = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  int skstorage = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SK_STORAGE, nullptr);
  auto verdict = [&env](int r) -> Napi::Value {
    if (r == 1) return Napi::Boolean::New(env, true);
    if (r == 0) return Napi::Boolean::New(env, false);
    return Napi::String::New(env, ErrnoName(-r));
  };
  out.Set("ringbuf", verdict(ringbuf));
  out.Set("skStorage", verdict(skstorage));
  TakeLog();
#else
  out.Set("libbpf", Napi::Boolean::New(env, false));
#endif
  return out;
}

// clocks(): CLOCK_BOOTTIME (the BPF timestamps) and CLOCK_REALTIME read back to back.
Napi::Value Clocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  uint64_t boot = ClockNs(CLOCK_BOOTTIME);
  uint64_t real = ClockNs(CLOCK_REALTIME);
  out.Set("boottimeNs", Napi::BigInt::New(env, boot));
  out.Set("realtimeNs", Napi::BigInt::New(env, real));
  return out;
}

// ---------------------------------------------------------------------------------------
// eBPF capture.

#if HAVE_LIBBPF && FLOW_SKEL_AVAILABLE
class BpfReader : public BatchReader {
 public:
  ~BpfReader() override { Stop(); Close(); }

  struct flow_bpf* skel = nullptr;
  struct ring_buffer* ring = nullptr;

  uint64_t kernel_lost() const {
    if (skel == nullptr || skel->bss == nullptr) return 0;
    return __atomic_load_n(&skel->bss->flow_lost, __ATOMIC_RELAXED);
  }

  // State changes no program saw: flow_state's recursion misses (the kernel skipped it
  // because it was already running on that CPU) that flow_state_nested did not take.
  uint64_t kernel_skipped() const {
    if (skel == nullptr || skel->bss == nullptr) return 0;
    struct bpf_prog_info prog_info{};
    __u32 len = sizeof prog_info;
    if (bpf_obj_get_info_by_fd(bpf_program__fd(skel->progs.flow_state), &prog_info, &len) != 0) return 0;
    uint64_t handled = __atomic_load_n(&skel->bss->flow_nested_handled, __ATOMIC_RELAXED);
    return prog_info.recursion_misses > handled ? prog_info.recursion_misses - handled : 0;
  }

  uint64_t close_at_destroy() const {
    if (skel == nullptr || skel->bss == nullptr) return 0;
    return __atomic_load_n(&skel->bss->flow_close_at_destroy, __ATOMIC_RELAXED);
  }

  static int OnRecord(void* ctx, void* data, size_t size) {
    static_cast<BpfReader*>(ctx)->Append(data, size, 1);
    return 0;
  }

 protected:
  void PollOnce() override {
    // The program wakes us only when the ring fills up (records are submitted without a
    // wakeup), so consume whatever is there after every wait, woken or timed out.
    // EINTR is not an error here: the loop checks the stop flag and polls again.
    if (ring == nullptr) return;
    ring_buffer__poll(ring, kPollMs);
    ring_buffer__consume(ring);
  }

  void Close() override {
    if (ring != nullptr) {
      ring_buffer__free(ring);
      ring = nullptr;
    }
    if (skel != nullptr) {
      // Destroys the links stored in skel->links, the programs and the maps.
      flow_bpf__destroy(skel);
      skel = nullptr;
    }
  }
};
#endif

class BpfCapture : public Napi::ObjectWrap<BpfCapture> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BpfCapture",
                       {InstanceMethod("start", &BpfCapture::Start), InstanceMethod("stop", &BpfCapture::StopJs),
                        InstanceMethod("stats", &BpfCapture::Stats)});
  }

  explicit BpfCapture(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfCapture>(info) {}

 private:
#if HAVE_LIBBPF && FLOW_SKEL_AVAILABLE
  std::unique_ptr<BpfReader> reader_;

  static uint32_t U32(const Napi::Object& o, const char* key, uint32_t fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : fallback;
  }

  // Checks every option SetConfig(), FillFilters() and Start() read, before anything is loaded: a wrong
  // value is a typed error, never a wrapped number, a failed cast or a half-made capture.
  // Returns "" when the options are usable, else what is wrong.
  static std::string Validate(const Napi::Object& opts) {
    for (const char* key : {"events", "sides", "firstBytes"}) {
      Napi::Value v = opts.Get(key);
      if (!v.IsUndefined() && !IsIntIn(v, 0, 4294967295.0)) return std::string("options.") + key + " must be an integer from 0 to 2^32-1";
    }
    Napi::Value ring = opts.Get("ringBytes");
    if (!ring.IsUndefined()) {
      // The kernel wants a power of two that is a multiple of the page size.
      if (!IsIntIn(ring, 4096, 1 << 30)) return "options.ringBytes must be a power of two from 4096 to 2^30";
      uint32_t r = ring.As<Napi::Number>().Uint32Value();
      if ((r & (r - 1)) != 0) return "options.ringBytes must be a power of two from 4096 to 2^30";
    }
    Napi::Value protocols = opts.Get("protocols");
    if (!protocols.IsUndefined() && !IsIntIn(protocols, 1, FLOW_PROTO_TCP | FLOW_PROTO_UDP)) return "options.protocols must be 1 (TCP), 2 (UDP) or 3 (both)";
    Napi::Value io = opts.Get("ownerFromIo");
    if (!io.IsUndefined() && !io.IsBoolean()) return "options.ownerFromIo must be a boolean";
    Napi::Value cg = opts.Get("cgroupId");
    if (!cg.IsUndefined()) {
      if (!cg.IsBigInt()) return "options.cgroupId must be a bigint";
      bool lossless = false;
      cg.As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) return "options.cgroupId must be a bigint from 0 to 2^64-1";
    }
    Napi::Value path = opts.Get("cgroupPath");
    if (!path.IsUndefined()) {
      if (!path.IsString()) return "options.cgroupPath must be a string";
      if (path.As<Napi::String>().Utf8Value().find('\0') != std::string::npos) return "options.cgroupPath must not contain a NUL character";
    }
    Napi::Value ports = opts.Get("ports");
    if (!ports.IsUndefined()) {
      if (!ports.IsArray()) return "options.ports must be an array";
      Napi::Array list = ports.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        if (!IsIntIn(list.Get(i), 1, 65535)) return "options.ports[" + std::to_string(i) + "] must be a port from 1 to 65535";
      }
    }
    Napi::Value cidrs = opts.Get("cidrs");
    if (!cidrs.IsUndefined()) {
      if (!cidrs.IsArray()) return "options.cidrs must be an array";
      Napi::Array list = cidrs.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        std::string at = "options.cidrs[" + std::to_string(i) + "]";
        Napi::Value c = list.Get(i);
        if (!c.IsObject()) return at + " must be { address: Buffer, prefix }";
        Napi::Value addr = c.As<Napi::Object>().Get("address");
        if (!addr.IsBuffer()) return at + ".address must be a Buffer of 4 or 16 bytes";
        size_t len = addr.As<Napi::Buffer<uint8_t>>().Length();
        if (len != 4 && len != 16) return at + ".address must be a Buffer of 4 or 16 bytes";
        if (!IsIntIn(c.As<Napi::Object>().Get("prefix"), 0, len * 8)) return at + ".prefix must be an integer from 0 to " + std::to_string(len * 8);
      }
    }
    return "";
  }

  // The kernel-side configuration (read-only data of the program): set before load, so
  // the verifier can drop the branches this configuration never takes.
  static void SetConfig(struct flow_bpf* skel, const Napi::Object& opts) {
    struct flow_config cfg{};
    cfg.events = U32(opts, "events", FLOW_EV_OPEN | FLOW_EV_CLOSE);
    cfg.sides = U32(opts, "sides", 0);
    Napi::Value cg = opts.Get("cgroupId");
    if (cg.IsBigInt()) {
      bool lossless = true;
      cfg.cgroup_id = cg.As<Napi::BigInt>().Uint64Value(&lossless);
    }
    Napi::Value ports = opts.Get("ports");
    cfg.port_filter = ports.IsArray() && ports.As<Napi::Array>().Length() > 0 ? 1 : 0;
    Napi::Value cidrs = opts.Get("cidrs");
    cfg.cidr_filter = cidrs.IsArray() && cidrs.As<Napi::Array>().Length() > 0 ? 1 : 0;
    cfg.first_bytes = U32(opts, "firstBytes", 0);
    if (cfg.first_bytes > FLOW_FIRST_BYTES_MAX) cfg.first_bytes = FLOW_FIRST_BYTES_MAX;
    cfg.wake_bytes = U32(opts, "ringBytes", 4u << 20) / 4;
    cfg.protocols = U32(opts, "protocols", FLOW_PROTO_TCP);
    std::memcpy(const_cast<struct flow_config*>(&skel->rodata->flow_cfg), &cfg, sizeof cfg);
  }

  // Attaches two programs to the cgroup at `path`, both or neither; returns 0 or an errno.
  static int AttachCgroupPair(const std::string& path, struct bpf_program* a, struct bpf_link** a_link, struct bpf_program* b,
                              struct bpf_link** b_link) {
    int cg = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0) return errno;
    struct bpf_link* first = bpf_program__attach_cgroup(a, cg);
    int err = first == nullptr ? errno : 0;
    struct bpf_link* second = first != nullptr ? bpf_program__attach_cgroup(b, cg) : nullptr;
    if (first != nullptr && second == nullptr) err = errno;
    close(cg);
    if (err != 0) {
      if (first != nullptr) bpf_link__destroy(first);
      return err;
    }
    *a_link = first;
    *b_link = second;
    return 0;
  }

  // Fills the filter maps after load; returns an errno on failure.
  static int FillFilters(struct flow_bpf* skel, const Napi::Object& opts) {
    Napi::Value ports = opts.Get("ports");
    if (ports.IsArray()) {
      Napi::Array list = ports.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        __u16 port = static_cast<__u16>(list.Get(i).As<Napi::Number>().Uint32Value());
        __u8 one = 1;
        if (bpf_map__update_elem(skel->maps.flow_ports, &port, sizeof port, &one, sizeof one, BPF_ANY) != 0) return errno;
      }
    }
    Napi::Value cidrs = opts.Get("cidrs");
    if (cidrs.IsArray()) {
      Napi::Array list = cidrs.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        Napi::Object c = list.Get(i).As<Napi::Object>();
        Napi::Buffer<uint8_t> addr = c.Get("address").As<Napi::Buffer<uint8_t>>();
        uint32_t prefix = U32(c, "prefix", 0);
        __u8 one = 1;
        if (addr.Length() == 4) {
          struct flow_cidr4_key k{};
          k.prefixlen = prefix;
          std::memcpy(k.addr, addr.Data(), 4);
          if (bpf_map__update_elem(skel->maps.flow_cidr4, &k, sizeof k, &one, sizeof one, BPF_ANY) != 0) return errno;
        } else if (addr.Length() == 16) {
          struct flow_cidr6_key k{};
          k.prefixlen = prefix;
          std::memcpy(k.addr, addr.Data(), 16);
          if (bpf_map__update_elem(skel->maps.flow_cidr6, &k, sizeof k, &one, sizeof one, BPF_ANY) != 0) return errno;
        }
      }
    }
    return 0;
  }
#endif

  // start(options, onBatch) → { programs: {name: attached?}, ringBytes }.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
#if HAVE_LIBBPF && FLOW_SKEL_AVAILABLE
    if (reader_ && reader_->running()) {
      AlreadyStarted(env).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
      ArgError(env, "start(options, onBatch)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object opts = info[0].As<Napi::Object>();
    std::string invalid = Validate(opts);
    if (!invalid.empty()) {
      ArgError(env, invalid).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t ring_bytes = U32(opts, "ringBytes", 4u << 20);
    bool io = !opts.Get("ownerFromIo").IsBoolean() || opts.Get("ownerFromIo").As<Napi::Boolean>().Value();
    libbpf_set_print(CaptureLibbpfLog);
    TakeLog();

    struct btf* vmlinux = btf__load_vmlinux_btf();
    bool has_send = VmlinuxHasTracepoint(vmlinux, "sock_send_length");
    bool has_recv = VmlinuxHasTracepoint(vmlinux, "sock_recv_length");
    bool has_destroy = VmlinuxHasTracepoint(vmlinux, "tcp_destroy_sock");
    if (vmlinux != nullptr) btf__free(vmlinux);

    uint32_t first_bytes = U32(opts, "firstBytes", 0);
    std::string cgroup_path;
    if (opts.Get("cgroupPath").IsString()) cgroup_path = opts.Get("cgroupPath").As<Napi::String>().Utf8Value();
    uint32_t protocols = U32(opts, "protocols", FLOW_PROTO_TCP);
    bool tcp = (protocols & FLOW_PROTO_TCP) != 0;
    bool want_bytes = tcp && first_bytes > 0 && !cgroup_path.empty();

    // Load; when an optional hook is what fails, load again without it (first bytes, then
    // the I/O hooks), so the lifecycle still runs on kernels that lack them.
    struct flow_bpf* skel = nullptr;
    int err = 0;
    bool with_io = tcp && io && has_send && has_recv;
    bool with_bytes = want_bytes;
    // The sock_ops close hook, on the same cgroup v2 root (needs CAP_NET_ADMIN to attach).
    bool with_sockops = tcp && !cgroup_path.empty();
    // UDP: cgroup sock_create/sock_release and the cgroup_skb counters, all on the cgroup v2 root.
    bool with_udp = (protocols & FLOW_PROTO_UDP) != 0 && !cgroup_path.empty();
    std::string degraded;
    if ((protocols & FLOW_PROTO_UDP) != 0 && cgroup_path.empty()) {
      if (!tcp) {
        Napi::Error e = Napi::Error::New(env, "UDP capture needs cgroup v2 (its programs attach to the cgroup v2 root), and it is not mounted");
        e.Set("code", Napi::String::New(env, "ENOTSUP"));
        e.ThrowAsJavaScriptException();
        return env.Undefined();
      }
      degraded += "UDP capture off: cgroup v2 is not mounted; ";
    }
    for (;;) {
      skel = flow_bpf__open();
      if (skel == nullptr) {
        err = errno;
        break;
      }
      bpf_program__set_autoload(skel->progs.flow_send, with_io);
      bpf_program__set_autoload(skel->progs.flow_recv, with_io);
      bpf_program__set_autoload(skel->progs.flow_state, tcp);
      bpf_program__set_autoload(skel->progs.flow_state_nested, tcp);
      bpf_program__set_autoload(skel->progs.flow_destroy, tcp && has_destroy);
      bpf_program__set_autoload(skel->progs.flow_egress, with_bytes || with_udp);
      bpf_program__set_autoload(skel->progs.flow_ingress, with_bytes || with_udp);
      bpf_program__set_autoload(skel->progs.flow_sockops, with_sockops);
      bpf_program__set_autoload(skel->progs.flow_udp_create, with_udp);
      bpf_program__set_autoload(skel->progs.flow_udp_release, with_udp);
      bpf_map__set_max_entries(skel->maps.flow_events, ring_bytes);
      SetConfig(skel, opts);
      if (flow_bpf__load(skel) == 0) {
        err = 0;
        break;
      }
      err = errno;
      flow_bpf__destroy(skel);
      skel = nullptr;
      // Loading a sock_ops program needs CAP_NET_ADMIN: without it, load the rest.
      if (err == EPERM && with_sockops) {
        with_sockops = false;
        continue;
      }
      // So do the UDP programs (cgroup sock and cgroup_skb).
      if (err == EPERM && with_udp && tcp) {
        with_udp = false;
        degraded += "UDP capture off: its cgroup programs need CAP_NET_ADMIN; ";
        continue;
      }
      if (err == EPERM) break;
      if (with_udp && tcp) {
        with_udp = false;
        degraded += "UDP programs did not load; ";
      } else if (with_bytes) {
        with_bytes = false;
        degraded += "cgroup_skb programs did not load; ";
      } else if (with_sockops) {
        // Closes still come from the tracepoints; the note is added after attaching.
        with_sockops = false;
      } else if (with_io) {
        with_io = false;
        degraded += "sock_send_length/sock_recv_length programs did not load; ";
      } else {
        break;
      }
    }
    if (skel == nullptr) {
      std::string log = TakeLog();
      Napi::Error e = SystemError(env, err != 0 ? err : EINVAL, "bpf_object__load", "");
      e.Set("log", Napi::String::New(env, log));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    err = FillFilters(skel, opts);
    if (err != 0) {
      flow_bpf__destroy(skel);
      SystemError(env, err, "bpf_map_update_elem", "filters").ThrowAsJavaScriptException();
      return env.Undefined();
    }

    Napi::Object programs = Napi::Object::New(env);
    struct Hook {
      const char* name;
      struct bpf_program* prog;
      struct bpf_link** link;
    } hooks[] = {
        {"inet_sock_set_state", skel->progs.flow_state, &skel->links.flow_state},
        {"inet_sock_set_state_nested", skel->progs.flow_state_nested, &skel->links.flow_state_nested},
        {"sock_send_length", skel->progs.flow_send, &skel->links.flow_send},
        {"sock_recv_length", skel->progs.flow_recv, &skel->links.flow_recv},
        {"tcp_destroy_sock", skel->progs.flow_destroy, &skel->links.flow_destroy},
    };
    for (const Hook& hook : hooks) {
      bool attached = false;
      if (hook.prog == nullptr) continue;
      if (bpf_program__autoload(hook.prog)) {
        struct bpf_link* link = bpf_program__attach(hook.prog);
        if (link != nullptr) {
          *hook.link = link;
          attached = true;
        } else if (hook.prog == skel->progs.flow_state || hook.prog == skel->progs.flow_state_nested) {
          err = errno;
          flow_bpf__destroy(skel);
          SystemError(env, err, "bpf_program__attach", std::string("tp_btf/inet_sock_set_state (") + bpf_program__name(hook.prog) + ")").ThrowAsJavaScriptException();
          return env.Undefined();
        }
      }
      programs.Set(hook.name, Napi::Boolean::New(env, attached));
    }
    // First bytes and UDP counts: cgroup_skb on the cgroup v2 root (needs CAP_NET_ADMIN besides CAP_BPF).
    bool bytes_attached = false;
    if (with_bytes || with_udp) {
      int attach_err = AttachCgroupPair(cgroup_path, skel->progs.flow_egress, &skel->links.flow_egress, skel->progs.flow_ingress, &skel->links.flow_ingress);
      bytes_attached = attach_err == 0;
      if (!bytes_attached) degraded += "cgroup_skb on " + cgroup_path + " failed: " + std::strerror(attach_err) + " (needs CAP_NET_ADMIN); ";
    }
    programs.Set("cgroup_skb", Napi::Boolean::New(env, bytes_attached));
    // UDP: socket creation and release on the same root; without the counters there is no UDP capture.
    bool udp_attached = false;
    if (with_udp && bytes_attached) {
      err = AttachCgroupPair(cgroup_path, skel->progs.flow_udp_create, &skel->links.flow_udp_create, skel->progs.flow_udp_release, &skel->links.flow_udp_release);
      udp_attached = err == 0;
    }
    programs.Set("sock_create", Napi::Boolean::New(env, udp_attached));
    programs.Set("sock_release", Napi::Boolean::New(env, udp_attached));
    if ((protocols & FLOW_PROTO_UDP) != 0 && with_udp && !udp_attached) {
      if (!tcp) {
        flow_bpf__destroy(skel);
        SystemError(env, err != 0 ? err : EPERM, "bpf_program__attach_cgroup", "UDP capture: cgroup sock and cgroup_skb programs on " + cgroup_path).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      degraded += "UDP capture off: its cgroup programs did not attach (needs CAP_NET_ADMIN); ";
    }
    bool sockops_attached = false;
    if (with_sockops) {
      int cg = open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (cg >= 0) {
        struct bpf_link* link = bpf_program__attach_cgroup(skel->progs.flow_sockops, cg);
        close(cg);
        if (link != nullptr) {
          skel->links.flow_sockops = link;
          sockops_attached = true;
        }
      }
    }
    programs.Set("sockops", Napi::Boolean::New(env, sockops_attached));
    // Measured here: under connection bursts the kernel does not run the tracepoint programs
    // for a few closes and records no recursion miss for them either; only this hook sees them.
    if (tcp && !sockops_attached) {
      degraded += cgroup_path.empty() ? "sock_ops close hook off (cgroup v2 is not mounted)" : "sock_ops close hook off (needs CAP_NET_ADMIN)";
      degraded += ": under connection bursts some closes can be missed without being counted; ";
    }

    struct ring_buffer* ring = nullptr;
    auto reader = std::make_unique<BpfReader>();
    ring = ring_buffer__new(bpf_map__fd(skel->maps.flow_events), &BpfReader::OnRecord, reader.get(), nullptr);
    if (ring == nullptr) {
      err = errno;
      flow_bpf__destroy(skel);
      SystemError(env, err, "ring_buffer__new", "").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    reader->skel = skel;
    reader->ring = ring;
    reader->StartThread(env, info[1].As<Napi::Function>(), "flow-bpf");
    reader_ = std::move(reader);

    Napi::Object out = Napi::Object::New(env);
    out.Set("programs", programs);
    out.Set("ringBytes", Napi::Number::New(env, bpf_map__max_entries(skel->maps.flow_events)));
    out.Set("recordSize", Napi::Number::New(env, sizeof(struct flow_record)));
    out.Set("degraded", Napi::String::New(env, degraded));
    return out;
#else
    Napi::Error e = Napi::Error::New(env, FLOW_SKEL_MISSING_REASON);
    e.Set("code", Napi::String::New(env, "ENOTSUP"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
#endif
  }

  Napi::Value StopJs(const Napi::CallbackInfo& info) {
#if HAVE_LIBBPF && FLOW_SKEL_AVAILABLE
    if (reader_) {
      reader_->Stop();
      reader_.reset();
    }
#endif
    return info.Env().Undefined();
  }

  // stats() → { kernelLost, kernelSkipped, closeAtDestroy, jsLost, delivered, batches } (doubles are exact to 2^53).
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    double kernel = 0, skipped = 0, at_destroy = 0, js = 0, delivered = 0, batches = 0;
#if HAVE_LIBBPF && FLOW_SKEL_AVAILABLE
    if (reader_) {
      kernel = static_cast<double>(reader_->kernel_lost());
      skipped = static_cast<double>(reader_->kernel_skipped());
      at_destroy = static_cast<double>(reader_->close_at_destroy());
      js = static_cast<double>(reader_->js_lost());
      delivered = static_cast<double>(reader_->delivered());
      batches = static_cast<double>(reader_->batches());
    }
#endif
    out.Set("kernelLost", kernel);
    out.Set("kernelSkipped", skipped);
    out.Set("closeAtDestroy", at_destroy);
    out.Set("jsLost", js);
    out.Set("delivered", delivered);
    out.Set("batches", batches);
    return out;
  }
};

// ---------------------------------------------------------------------------------------
// sock_diag.

int OpenDiagSocket(int* err) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) *err = errno;
  return fd;
}

// diagDump(family, states[, protocol]) → Buffer of the raw netlink replies (inet_diag_msg +
// attributes, tcp_info included for TCP), decoded in TypeScript. protocol: 6 (TCP, the
// default) or 17 (UDP: udp_diag, which has addresses, cookie, uid and inode but no counters).
Napi::Value DiagDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsIntIn(info[0], 0, 255) || !IsIntIn(info[1], 0, 4294967295.0) ||
      (info.Length() > 2 && !info[2].IsUndefined() && !IsIntIn(info[2], 0, 255))) {
    ArgError(env, "diagDump(family, states[, protocol]): family 2 or 10, states a 32-bit mask, protocol 6 or 17").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int family = info[0].As<Napi::Number>().Int32Value();
  uint32_t states = info[1].As<Napi::Number>().Uint32Value();
  int protocol = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : IPPROTO_TCP;
  if (family != AF_INET && family != AF_INET6) {
    ArgError(env, "family must be AF_INET (2) or AF_INET6 (10)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) {
    ArgError(env, "protocol must be IPPROTO_TCP (6) or IPPROTO_UDP (17)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int err = 0;
  int fd = OpenDiagSocket(&err);
  if (fd < 0) {
    SystemError(env, err, "socket", "NETLINK_SOCK_DIAG").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } request{};
  request.nlh.nlmsg_len = sizeof request;
  request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.nlh.nlmsg_seq = 1;
  request.req.sdiag_family = static_cast<uint8_t>(family);
  request.req.sdiag_protocol = static_cast<uint8_t>(protocol);
  request.req.idiag_states = states;
  request.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    err = errno;
    close(fd);
    SystemError(env, err, "sendto", "inet_diag dump").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(64 * 1024);
  bool done = false;
  while (!done) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      close(fd);
      SystemError(env, err, "recv", "inet_diag dump").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (n == 0) break;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<size_t>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        close(fd);
        SystemError(env, -e->error, "inet_diag", "dump").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      auto* bytes = reinterpret_cast<uint8_t*>(h);
      out.insert(out.end(), bytes, bytes + NLMSG_ALIGN(h->nlmsg_len));
    }
  }
  close(fd);
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

class DestroyReader : public BatchReader {
 public:
  int fd = -1;
  std::atomic<uint64_t> overruns{0};
  ~DestroyReader() override { Stop(); Close(); }

 protected:
  void PollOnce() override {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, kPollMs) <= 0) return;
    uint8_t buf[64 * 1024];
    for (int i = 0; i < 64; i++) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        // ENOBUFS: the kernel dropped multicast messages for this socket.
        if (errno == ENOBUFS) {
          overruns += 1;
          continue;
        }
        return;
      }
      uint32_t count = 0;
      size_t left = static_cast<size_t>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) count++;
      Append(buf, static_cast<size_t>(n), count);
    }
  }

  void Close() override {
    if (fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
};

// DiagDestroyListener: the "socket destroyed" multicast groups (IPv4 and IPv6; TCP, and UDP
// when asked), which need no privilege; a TCP message carries the socket's final tcp_info,
// and every message its protocol (INET_DIAG_PROTOCOL).
class DiagDestroyListener : public Napi::ObjectWrap<DiagDestroyListener> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "DiagDestroyListener",
                       {InstanceMethod("start", &DiagDestroyListener::Start), InstanceMethod("stop", &DiagDestroyListener::StopJs),
                        InstanceMethod("stats", &DiagDestroyListener::Stats)});
  }
  explicit DiagDestroyListener(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DiagDestroyListener>(info) {}

 private:
  std::unique_ptr<DestroyReader> reader_;

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (reader_ && reader_->running()) {
      AlreadyStarted(env).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 1 || !info[0].IsFunction() ||
        (info.Length() > 1 && !info[1].IsUndefined() && !IsIntIn(info[1], 1, FLOW_PROTO_TCP | FLOW_PROTO_UDP))) {
      ArgError(env, "start(onBatch[, protocols]): protocols 1 (TCP), 2 (UDP) or 3 (both)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t protocols = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : FLOW_PROTO_TCP;
    int err = 0;
    int fd = OpenDiagSocket(&err);
    if (fd < 0) {
      SystemError(env, err, "socket", "NETLINK_SOCK_DIAG").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // A large receive buffer rides out bursts of closes; FORCE works only with CAP_NET_ADMIN.
    int size = 8 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      err = errno;
      close(fd);
      SystemError(env, err, "bind", "NETLINK_SOCK_DIAG").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::vector<int> groups;
    if (protocols & FLOW_PROTO_TCP) groups.insert(groups.end(), {SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY});
    if (protocols & FLOW_PROTO_UDP) groups.insert(groups.end(), {SKNLGRP_INET_UDP_DESTROY, SKNLGRP_INET6_UDP_DESTROY});
    for (int group : groups) {
      if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
        err = errno;
        close(fd);
        SystemError(env, err, "setsockopt", "NETLINK_ADD_MEMBERSHIP sock_diag destroy group").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    reader_ = std::make_unique<DestroyReader>();
    reader_->fd = fd;
    reader_->StartThread(env, info[0].As<Napi::Function>(), "flow-sockdiag");
    return env.Undefined();
  }

  Napi::Value StopJs(const Napi::CallbackInfo& info) {
    if (reader_) {
      reader_->Stop();
      reader_.reset();
    }
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("kernelOverruns", reader_ ? static_cast<double>(reader_->overruns.load()) : 0.0);
    out.Set("jsLost", reader_ ? static_cast<double>(reader_->js_lost()) : 0.0);
    out.Set("delivered", reader_ ? static_cast<double>(reader_->delivered()) : 0.0);
    return out;
  }
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, kAbiVersion));
  exports.Set("recordVersion", Napi::Number::New(env, FLOW_RECORD_VERSION));
  exports.Set("recordSize", Napi::Number::New(env, sizeof(struct flow_record)));
  exports.Set("bytesRecordSize", Napi::Number::New(env, sizeof(struct flow_bytes_record)));
  Napi::Object layout = Napi::Object::New(env);
#define FLOW_EXPORT_FIELD(field, offset) layout.Set(#field, Napi::Number::New(env, offsetof(struct flow_record, field)));
  FLOW_RECORD_FIELDS(FLOW_EXPORT_FIELD)
#undef FLOW_EXPORT_FIELD
  exports.Set("recordLayout", layout);
  Napi::Object bytesLayout = Napi::Object::New(env);
#define FLOW_EXPORT_FIELD(field, offset) bytesLayout.Set(#field, Napi::Number::New(env, offsetof(struct flow_bytes_record, field)));
  FLOW_BYTES_RECORD_FIELDS(FLOW_EXPORT_FIELD)
#undef FLOW_EXPORT_FIELD
  exports.Set("bytesRecordLayout", bytesLayout);
  exports.Set("ebpfBuilt", Napi::Boolean::New(env, FLOW_SKEL_AVAILABLE != 0));
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("clocks", Napi::Function::New(env, Clocks));
  exports.Set("diagDump", Napi::Function::New(env, DiagDump));
  exports.Set("BpfCapture", BpfCapture::Init(env));
  exports.Set("DiagDestroyListener", DiagDestroyListener::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(flow, Init)
