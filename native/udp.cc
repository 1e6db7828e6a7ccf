// UDP sessions for a transparent listener: one bound UDP socket (TPROXY: IP_TRANSPARENT and
// IP_RECVORIGDSTADDR, so each datagram says where the client was going) read in recvmmsg
// batches on the JS thread's libuv loop, a session per client and original destination
// with an idle timeout and a cap, and, once JS decides, a relay to an upstream socket both
// ways with recvmmsg/sendmmsg, or a reject (drop, or ICMP port unreachable). Thin: JS gets
// new sessions, their first datagrams and their summaries in batches, and decides.
#include "udp.h"

#include "errors.h"
#include "connect.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <memory>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <uv.h>
#include <vector>

#ifndef IP_ORIGDSTADDR
#define IP_ORIGDSTADDR 20
#endif
#ifndef IPV6_ORIGDSTADDR
#define IPV6_ORIGDSTADDR 74
#endif

namespace traffic {
namespace {

constexpr int kBatch = 32;
constexpr size_t kMaxDatagram = 65536;
// Batches per readiness callback: other handles on the loop get their turn after this.
constexpr int kBatchesPerWake = 8;
// Datagrams a session holds while JS decides; more are dropped and counted.
constexpr size_t kQueueDatagrams = 64;
constexpr size_t kQueueBytes = 256 * 1024;
// ICMP errors sent per rejected session: a client that ignores them gets no flood back.
constexpr int kMaxIcmpPerSession = 8;
// The listener's receive buffer size (native/transparent.cc), for destination sockets.
constexpr int kDstRcvBuf = 8 << 20;

// One family for the whole session: an IPv4 client on a dual-stack socket arrives as
// ::ffff:a.b.c.d, and its reply and upstream sockets must be IPv4 ones.
void Unmap(sockaddr_storage* ss, socklen_t* len) {
  if (ss->ss_family != AF_INET6) return;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (!IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) return;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = sin6->sin6_port;
  std::memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
  std::memset(ss, 0, sizeof *ss);
  std::memcpy(ss, &sin, sizeof sin);
  *len = sizeof sin;
}

// The family, address and port bytes of an address, for the session key.
void AppendKey(std::string& key, const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    key.push_back('4');
    key.append(reinterpret_cast<const char*>(&sin.sin_addr), 4);
    key.append(reinterpret_cast<const char*>(&sin.sin_port), 2);
  } else {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    key.push_back('6');
    key.append(reinterpret_cast<const char*>(&sin6.sin6_addr), 16);
    key.append(reinterpret_cast<const char*>(&sin6.sin6_port), 2);
  }
}

Napi::Object AddressOf(Napi::Env env, const sockaddr_storage& ss) {
  Napi::Object out = Napi::Object::New(env);
  char text[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, text, sizeof text);
    out.Set("family", 4);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, text, sizeof text);
    out.Set("family", 6);
  }
  out.Set("address", text);
  out.Set("port", PortOf(ss));
  return out;
}

bool SetInt(int fd, int level, int name, int value) { return setsockopt(fd, level, name, &value, sizeof value) == 0; }

class UdpRelay;

enum class State { Pending, Forwarding, Dropping, Refusing };

// A poll handle on a session's own socket; closes the fd once libuv has let go of it.
struct SessionPoll {
  uv_poll_t handle{};
  int fd = -1;
};

// A socket bound (IP_TRANSPARENT, SO_REUSEADDR) to one original destination, shared by
// every forwarded session to it: replies leave from the address and port the clients sent
// to. Being bound there it also receives those clients' next datagrams (the kernel's socket
// match prefers it to the TPROXY listener), so it is read and demultiplexed like the
// listener. One per destination rather than one connected socket per session: no window
// between bind and connect in which another client's datagram lands on the wrong session,
// and no chain of thousands of sockets on one address and port for every lookup to walk.
struct DstSocket {
  uv_poll_t handle{};
  int fd = -1;
  UdpRelay* relay = nullptr;
  sockaddr_storage dst{};
  socklen_t dstLen = 0;
  std::string key;
  int refs = 0;
};

struct Session {
  UdpRelay* relay = nullptr;
  uint64_t id = 0;
  std::string key;
  // As the listener received it (maybe ::ffff:-mapped): where listener-sent replies go.
  sockaddr_storage clientRaw{};
  socklen_t clientRawLen = 0;
  sockaddr_storage client{};
  socklen_t clientLen = 0;
  sockaddr_storage dst{};
  socklen_t dstLen = 0;
  State state = State::Pending;
  std::vector<std::string> queue;
  size_t queued = 0;
  int reported = 0;
  int icmpSent = 0;
  SessionPoll* upstream = nullptr;
  DstSocket* reply = nullptr;
  uint64_t lastActive = 0;
  Session* older = nullptr;
  Session* newer = nullptr;
  double datagramsIn = 0, bytesIn = 0, datagramsOut = 0, bytesOut = 0, dropped = 0;
};

// Receive buffers of one batch, reused by every read of a relay.
struct Batch {
  std::vector<char> data = std::vector<char>(kBatch * kMaxDatagram);
  mmsghdr msgs[kBatch]{};
  iovec iovs[kBatch]{};
  sockaddr_storage names[kBatch]{};
  alignas(cmsghdr) char controls[kBatch][CMSG_SPACE(sizeof(sockaddr_in6)) + CMSG_SPACE(sizeof(sockaddr_in))]{};

  void Prepare(bool withNames) {
    for (int i = 0; i < kBatch; i++) {
      iovs[i].iov_base = data.data() + i * kMaxDatagram;
      iovs[i].iov_len = kMaxDatagram;
      msghdr& h = msgs[i].msg_hdr;
      std::memset(&h, 0, sizeof h);
      h.msg_iov = &iovs[i];
      h.msg_iovlen = 1;
      if (withNames) {
        h.msg_name = &names[i];
        h.msg_namelen = sizeof names[i];
        h.msg_control = controls[i];
        h.msg_controllen = sizeof controls[i];
      }
      msgs[i].msg_len = 0;
    }
  }
};

struct Event {
  enum Kind { NewSession, Datagram, End } kind = End;
  uint64_t id = 0;
  std::string datagram;
  const char* reason = "";
  sockaddr_storage client{}, dst{};
  double counts[5] = {0, 0, 0, 0, 0};
};

class UdpRelay {
 public:
  UdpRelay(Napi::Env env, int fd, bool transparent, uint64_t idleMs, size_t maxSessions, int sniffDatagrams, Napi::Function callback)
      : env_(env), fd_(fd), transparent_(transparent), idleMs_(idleMs), maxSessions_(maxSessions), sniff_(sniffDatagrams) {
    callback_ = Napi::Persistent(callback);
    napi_get_uv_event_loop(env, &loop_);
    socklen_t len = sizeof bound_;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound_), &len);
    boundLen_ = len;
  }

  int Start() {
    int rc = uv_poll_init_socket(loop_, &poll_, fd_);
    if (rc != 0) return rc;
    poll_.data = this;
    open_++;
    uv_poll_start(&poll_, UV_READABLE, OnListenerReadable);
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    open_++;
    uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
    ArmTimer();
    return 0;
  }

  void ArmTimer() {
    uint64_t tick = idleMs_ / 4;
    if (tick < 20) tick = 20;
    if (tick > 1000) tick = 1000;
    uv_timer_start(&timer_, OnTimer, tick, tick);
  }

  void SetLimits(uint64_t idleMs, size_t maxSessions) {
    idleMs_ = idleMs;
    maxSessions_ = maxSessions;
    ArmTimer();
  }

  // Ends every session and the listener; returns their summaries.
  std::vector<Event> Close() {
    std::vector<Event> ended;
    if (closed_) return ended;
    closed_ = true;
    while (oldest_ != nullptr) ended.push_back(EndEvent(oldest_, "listener-closed")), Remove(oldest_);
    callback_.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnRelayHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnRelayHandleClosed);
    if (icmp4_ >= 0) close(icmp4_);
    if (icmp6_ >= 0) close(icmp6_);
    return ended;
  }

  bool closed() const { return closed_; }
  Session* Find(uint64_t id) {
    auto it = byId_.find(id);
    return it == byId_.end() ? nullptr : it->second;
  }

  // Connects the session upstream and starts relaying; 0 or the errno (with `syscall`).
  int Forward(Session* s, const ConnectParams& params, const char** syscall, int* localPort, bool* fellBack) {
    ConnectStart up = StartConnect(params, SOCK_DGRAM);
    if (up.fd < 0) {
      *syscall = up.syscall;
      return up.err;
    }
    *fellBack = up.fellBack;
    sockaddr_storage local{};
    socklen_t llen = sizeof local;
    getsockname(up.fd, reinterpret_cast<sockaddr*>(&local), &llen);
    *localPort = PortOf(local);
    if (transparent_) {
      s->reply = AcquireDst(s, syscall);
      if (s->reply == nullptr) {
        int err = errno;
        close(up.fd);
        return err;
      }
    }
    s->upstream = Watch(up.fd, s, OnUpstreamReadable);
    s->state = State::Forwarding;
    for (const std::string& d : s->queue) SendUpstream(s, d.data(), d.size());
    s->queue.clear();
    s->queued = 0;
    return 0;
  }

  void Reject(Session* s, bool icmp) {
    s->state = icmp ? State::Refusing : State::Dropping;
    if (icmp && !s->queue.empty()) SendIcmp(s, s->queue.front().data(), s->queue.front().size());
    s->dropped += static_cast<double>(s->queue.size());
    s->queue.clear();
    s->queued = 0;
  }

  Event EndNow(Session* s, const char* reason) {
    Event e = EndEvent(s, reason);
    Remove(s);
    return e;
  }

  Napi::Object Stats(Napi::Env env) const {
    Napi::Object o = Napi::Object::New(env);
    o.Set("sessions", static_cast<double>(byId_.size()));
    o.Set("datagrams", received_);
    o.Set("overCap", overCap_);
    o.Set("queueDropped", queueDropped_);
    o.Set("noOriginalDst", noOriginalDst_);
    return o;
  }

  Napi::Object Bound(Napi::Env env) const { return AddressOf(env, bound_); }

  Napi::Object EventObject(Napi::Env env, const Event& e) const {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", static_cast<double>(e.id));
    switch (e.kind) {
      case Event::NewSession:
        o.Set("type", "session");
        o.Set("client", AddressOf(env, e.client));
        o.Set("dst", AddressOf(env, e.dst));
        o.Set("datagram", Napi::Buffer<char>::Copy(env, e.datagram.data(), e.datagram.size()));
        break;
      case Event::Datagram:
        o.Set("type", "datagram");
        o.Set("datagram", Napi::Buffer<char>::Copy(env, e.datagram.data(), e.datagram.size()));
        break;
      case Event::End:
        o.Set("type", "end");
        o.Set("reason", e.reason);
        o.Set("datagramsFromClient", e.counts[0]);
        o.Set("bytesFromClient", e.counts[1]);
        o.Set("datagramsToClient", e.counts[2]);
        o.Set("bytesToClient", e.counts[3]);
        o.Set("dropped", e.counts[4]);
        break;
    }
    return o;
  }

 private:
  static void OnRelayHandleClosed(uv_handle_t* handle) {
    auto* r = static_cast<UdpRelay*>(handle->data);
    if (--r->open_ == 0) {
      close(r->fd_);
      delete r;
    }
  }

  static void OnPollClosed(uv_handle_t* handle) {
    auto* p = reinterpret_cast<SessionPoll*>(handle);
    close(p->fd);
    delete p;
  }

  SessionPoll* Watch(int fd, Session* s, uv_poll_cb cb) {
    auto* p = new SessionPoll();
    p->fd = fd;
    uv_poll_init_socket(loop_, &p->handle, fd);
    p->handle.data = s;
    uv_poll_start(&p->handle, UV_READABLE, cb);
    return p;
  }

  void Unwatch(SessionPoll* p) {
    if (p == nullptr) return;
    uv_poll_stop(&p->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnPollClosed);
  }

  DstSocket* AcquireDst(Session* s, const char** syscall) {
    std::string key;
    AppendKey(key, s->dst);
    auto it = dsts_.find(key);
    if (it != dsts_.end()) {
      it->second->refs++;
      return it->second;
    }
    int family = s->dst.ss_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) {
      *syscall = "socket";
      return nullptr;
    }
    auto fail = [&](const char* what) -> DstSocket* {
      int err = errno;
      close(fd);
      errno = err;
      *syscall = what;
      return nullptr;
    };
    if (!(family == AF_INET ? SetInt(fd, SOL_IP, IP_TRANSPARENT, 1) : SetInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1))) {
      return fail(family == AF_INET ? "setsockopt IP_TRANSPARENT" : "setsockopt IPV6_TRANSPARENT");
    }
    // Another relay (a second listener) may serve the same destination.
    if (!SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) return fail("setsockopt SO_REUSEADDR");
    if (family == AF_INET6) SetInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    // New clients of this destination arrive here too, in bursts, like at the listener.
    if (!SetInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, kDstRcvBuf)) SetInt(fd, SOL_SOCKET, SO_RCVBUF, kDstRcvBuf);
    if (bind(fd, reinterpret_cast<sockaddr*>(&s->dst), s->dstLen) != 0) return fail("bind");
    auto* d = new DstSocket();
    d->fd = fd;
    d->relay = this;
    d->dst = s->dst;
    d->dstLen = s->dstLen;
    d->key = key;
    d->refs = 1;
    uv_poll_init_socket(loop_, &d->handle, fd);
    d->handle.data = d;
    uv_poll_start(&d->handle, UV_READABLE, OnDstReadable);
    dsts_.emplace(key, d);
    return d;
  }

  void ReleaseDst(DstSocket* d) {
    if (d == nullptr || --d->refs > 0) return;
    dsts_.erase(d->key);
    uv_poll_stop(&d->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&d->handle), [](uv_handle_t* h) {
      auto* dead = static_cast<DstSocket*>(h->data);
      close(dead->fd);
      delete dead;
    });
  }

  static void OnDstReadable(uv_poll_t* handle, int status, int) {
    auto* d = static_cast<DstSocket*>(handle->data);
    if (status < 0) return;
    UdpRelay* r = d->relay;
    r->Read(d->fd, d);
    r->Deliver();
  }

  void SendUpstream(Session* s, const char* data, size_t len) {
    if (send(s->upstream->fd, data, len, MSG_DONTWAIT) < 0) s->dropped++;
  }

  static void OnListenerReadable(uv_poll_t* handle, int status, int) {
    auto* r = static_cast<UdpRelay*>(handle->data);
    if (status < 0) return;
    r->Read(r->fd_, nullptr);
    r->Deliver();
  }

  static void OnUpstreamReadable(uv_poll_t* handle, int status, int) {
    // Closed handles get no callbacks (uv_close), so the session is alive here.
    auto* s = static_cast<Session*>(handle->data);
    if (status >= 0) s->relay->Pump(s);
  }

  // Moves the upstream's answers to the client a batch at a time.
  void Pump(Session* s) {
    int from = s->upstream->fd;
    for (int round = 0; round < kBatchesPerWake; round++) {
      batch_.Prepare(false);
      int n = recvmmsg(from, batch_.msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) {
        // ECONNREFUSED: an ICMP error for an earlier datagram, reported once; read on.
        if (n < 0 && errno == ECONNREFUSED) continue;
        break;
      }
      mmsghdr out[kBatch];
      iovec iov[kBatch];
      int outFd = s->reply != nullptr ? s->reply->fd : fd_;
      for (int i = 0; i < n; i++) {
        iov[i].iov_base = batch_.iovs[i].iov_base;
        iov[i].iov_len = batch_.msgs[i].msg_len;
        std::memset(&out[i], 0, sizeof out[i]);
        out[i].msg_hdr.msg_iov = &iov[i];
        out[i].msg_hdr.msg_iovlen = 1;
        // The listener's socket may be dual-stack: it takes the address as it came.
        out[i].msg_hdr.msg_name = s->reply != nullptr ? &s->client : &s->clientRaw;
        out[i].msg_hdr.msg_namelen = s->reply != nullptr ? s->clientLen : s->clientRawLen;
        s->datagramsOut++;
        s->bytesOut += batch_.msgs[i].msg_len;
      }
      int sent = 0;
      while (sent < n) {
        int k = sendmmsg(outFd, out + sent, n - sent, MSG_DONTWAIT);
        if (k <= 0) {
          // A full send buffer or an ICMP error for this peer: drop the rest, as a router would.
          s->dropped += n - sent;
          break;
        }
        sent += k;
      }
      Touch(s);
      if (n < kBatch) break;
    }
  }

  // Client datagrams from the listener (`via` null: the destination is in each one's
  // IP_ORIGDSTADDR) or from a destination socket (it is that socket's address).
  void Read(int fd, const DstSocket* via) {
    for (int round = 0; round < kBatchesPerWake; round++) {
      batch_.Prepare(true);
      int n = recvmmsg(fd, batch_.msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) break;
      for (int i = 0; i < n; i++) OnDatagram(i, via);
      if (n < kBatch) break;
    }
  }

  void OnDatagram(int i, const DstSocket* via) {
    received_++;
    msghdr& h = batch_.msgs[i].msg_hdr;
    const char* data = static_cast<const char*>(batch_.iovs[i].iov_base);
    size_t len = batch_.msgs[i].msg_len;
    sockaddr_storage client{};
    std::memcpy(&client, &batch_.names[i], h.msg_namelen);
    socklen_t clientLen = h.msg_namelen;
    sockaddr_storage clientRaw = client;
    socklen_t clientRawLen = clientLen;
    Unmap(&client, &clientLen);
    sockaddr_storage dst{};
    socklen_t dstLen = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) {
        std::memcpy(&dst, CMSG_DATA(c), sizeof(sockaddr_in));
        dstLen = sizeof(sockaddr_in);
      } else if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR) {
        std::memcpy(&dst, CMSG_DATA(c), sizeof(sockaddr_in6));
        dstLen = sizeof(sockaddr_in6);
      }
    }
    if (via != nullptr) {
      dst = via->dst;
      dstLen = via->dstLen;
    } else if (dstLen == 0) {
      // Not transparent (plain mode): the datagram was for the listener itself.
      if (transparent_) noOriginalDst_++;
      dst = bound_;
      dstLen = boundLen_;
    }
    Unmap(&dst, &dstLen);
    if (dst.ss_family != client.ss_family) return;
    std::string key;
    key.reserve(40);
    AppendKey(key, client);
    AppendKey(key, dst);
    auto it = byKey_.find(key);
    Session* s;
    bool fresh = false;
    if (it != byKey_.end()) {
      s = it->second;
    } else {
      if (byId_.size() >= maxSessions_) {
        overCap_++;
        return;
      }
      s = new Session();
      s->id = ++nextId_;
      s->key = key;
      s->client = client;
      s->clientLen = clientLen;
      s->clientRaw = clientRaw;
      s->clientRawLen = clientRawLen;
      s->dst = dst;
      s->dstLen = dstLen;
      byKey_.emplace(key, s);
      byId_.emplace(s->id, s);
      s->relay = this;
      fresh = true;
      Event e;
    e.kind = Event::NewSession;
      e.id = s->id;
      e.client = client;
      e.dst = dst;
      e.datagram.assign(data, len);
      events_.push_back(std::move(e));
      s->reported = 1;
    }
    Touch(s);
    s->datagramsIn++;
    s->bytesIn += len;
    switch (s->state) {
      case State::Pending:
        // The new-session event carries the first datagram.
        if (!fresh && s->reported < sniff_) {
          Event e;
    e.kind = Event::Datagram;
          e.id = s->id;
          e.datagram.assign(data, len);
          events_.push_back(std::move(e));
          s->reported++;
        }
        if (s->queue.size() < kQueueDatagrams && s->queued + len <= kQueueBytes) {
          s->queue.emplace_back(data, len);
          s->queued += len;
        } else {
          s->dropped++;
          queueDropped_++;
        }
        break;
      case State::Forwarding:
        SendUpstream(s, data, len);
        break;
      case State::Dropping:
        s->dropped++;
        break;
      case State::Refusing:
        s->dropped++;
        SendIcmp(s, data, len);
        break;
    }
  }

  // ICMP port unreachable from the original destination, quoting the client's datagram
  // (RFC 792 / RFC 4443 §3.1): the client's stack reports ECONNREFUSED at once, where a
  // silent drop would leave it waiting for its own timeout.
  void SendIcmp(Session* s, const char* data, size_t len) {
    if (s->icmpSent >= kMaxIcmpPerSession) return;
    s->icmpSent++;
    if (s->client.ss_family == AF_INET) {
      if (icmp4_ < 0) icmp4_ = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
      if (icmp4_ < 0) return;
      const auto& c = reinterpret_cast<const sockaddr_in&>(s->client);
      const auto& d = reinterpret_cast<const sockaddr_in&>(s->dst);
      size_t quote = std::min(len, static_cast<size_t>(548 - 20 - 8 - 20 - 8));
      std::vector<uint8_t> pkt(20 + 8 + 20 + 8 + quote, 0);
      FillIpv4(pkt.data(), IPPROTO_ICMP, d.sin_addr.s_addr, c.sin_addr.s_addr, pkt.size());
      uint8_t* icmp = pkt.data() + 20;
      icmp[0] = ICMP_DEST_UNREACH;
      icmp[1] = ICMP_PORT_UNREACH;
      // The client's datagram as it left: the kernel there matches the error to its socket by it.
      FillIpv4(icmp + 8, IPPROTO_UDP, c.sin_addr.s_addr, d.sin_addr.s_addr, 20 + 8 + len);
      reinterpret_cast<iphdr*>(icmp + 8)->check = Checksum(icmp + 8, 20);
      auto* udp = reinterpret_cast<udphdr*>(icmp + 28);
      udp->source = c.sin_port;
      udp->dest = d.sin_port;
      udp->len = htons(static_cast<uint16_t>(8 + len));
      std::memcpy(icmp + 36, data, quote);
      uint16_t sum = Checksum(icmp, pkt.size() - 20);
      std::memcpy(icmp + 2, &sum, 2);
      sendto(icmp4_, pkt.data(), pkt.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&c), sizeof c);
      return;
    }
    if (icmp6_ < 0) {
      icmp6_ = socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
      // The source is the original destination, which is not this host's: allowed with it.
      if (icmp6_ >= 0) SetInt(icmp6_, SOL_IPV6, IPV6_TRANSPARENT, 1);
    }
    if (icmp6_ < 0) return;
    const auto& c = reinterpret_cast<const sockaddr_in6&>(s->client);
    const auto& d = reinterpret_cast<const sockaddr_in6&>(s->dst);
    size_t quote = std::min(len, static_cast<size_t>(1280 - 40 - 8 - 40 - 8));
    std::vector<uint8_t> pkt(8 + 40 + 8 + quote, 0);
    pkt[0] = ICMP6_DST_UNREACH;
    pkt[1] = ICMP6_DST_UNREACH_NOPORT;
    auto* inner = reinterpret_cast<ip6_hdr*>(pkt.data() + 8);
    inner->ip6_flow = htonl(6u << 28);
    inner->ip6_plen = htons(static_cast<uint16_t>(8 + len));
    inner->ip6_nxt = IPPROTO_UDP;
    inner->ip6_hlim = 64;
    inner->ip6_src = c.sin6_addr;
    inner->ip6_dst = d.sin6_addr;
    auto* udp = reinterpret_cast<udphdr*>(pkt.data() + 48);
    udp->source = c.sin6_port;
    udp->dest = d.sin6_port;
    udp->len = htons(static_cast<uint16_t>(8 + len));
    std::memcpy(pkt.data() + 56, data, quote);
    // The kernel fills the ICMPv6 checksum of a raw ICMPv6 socket (RFC 3542 §3.1).
    sockaddr_in6 to = c;
    to.sin6_port = 0;
    iovec iov{pkt.data(), pkt.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))] = {0};
    msghdr m{};
    m.msg_name = &to;
    m.msg_namelen = sizeof to;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_IPV6;
    cm->cmsg_type = IPV6_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo info{};
    info.ipi6_addr = d.sin6_addr;
    std::memcpy(CMSG_DATA(cm), &info, sizeof info);
    sendmsg(icmp6_, &m, MSG_DONTWAIT);
  }

  static void FillIpv4(uint8_t* at, uint8_t protocol, in_addr_t from, in_addr_t to, size_t totalLength) {
    auto* ip = reinterpret_cast<iphdr*>(at);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = protocol;
    ip->saddr = from;
    ip->daddr = to;
    ip->tot_len = htons(static_cast<uint16_t>(totalLength));
  }

  static uint16_t Checksum(const uint8_t* p, size_t n) {
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons(static_cast<uint16_t>(~sum));
  }

  void Touch(Session* s) {
    s->lastActive = uv_now(loop_);
    if (newest_ == s) return;
    Unlink(s);
    s->older = newest_;
    s->newer = nullptr;
    if (newest_ != nullptr) newest_->newer = s;
    newest_ = s;
    if (oldest_ == nullptr) oldest_ = s;
  }

  void Unlink(Session* s) {
    if (s->older != nullptr) s->older->newer = s->newer;
    if (s->newer != nullptr) s->newer->older = s->older;
    if (oldest_ == s) oldest_ = s->newer;
    if (newest_ == s) newest_ = s->older;
    s->older = s->newer = nullptr;
  }

  Event EndEvent(Session* s, const char* reason) {
    Event e;
    e.kind = Event::End;
    e.id = s->id;
    e.reason = reason;
    e.counts[0] = s->datagramsIn;
    e.counts[1] = s->bytesIn;
    e.counts[2] = s->datagramsOut;
    e.counts[3] = s->bytesOut;
    e.counts[4] = s->dropped;
    return e;
  }

  void Remove(Session* s) {
    Unlink(s);
    byKey_.erase(s->key);
    byId_.erase(s->id);
    Unwatch(s->upstream);
    ReleaseDst(s->reply);
    delete s;
  }

  static void OnTimer(uv_timer_t* handle) {
    auto* r = static_cast<UdpRelay*>(handle->data);
    uint64_t now = uv_now(r->loop_);
    while (r->oldest_ != nullptr && now - r->oldest_->lastActive >= r->idleMs_) {
      r->events_.push_back(r->EndEvent(r->oldest_, "idle"));
      r->Remove(r->oldest_);
    }
    r->Deliver();
  }

  // Hands the events of this wake-up to JS in one call.
  void Deliver() {
    if (events_.empty() || closed_ || callback_.IsEmpty()) {
      events_.clear();
      return;
    }
    std::vector<Event> events;
    events.swap(events_);
    Napi::HandleScope scope(env_);
    Napi::Array list = Napi::Array::New(env_, events.size());
    for (size_t i = 0; i < events.size(); i++) list.Set(static_cast<uint32_t>(i), EventObject(env_, events[i]));
    try {
      callback_.MakeCallback(env_.Global(), {list});
    } catch (const Napi::Error& e) {
      // The JS side reports its own failures; a throw must not unwind into libuv.
      (void)e;
    }
  }

  Napi::Env env_;
  int fd_;
  bool transparent_;
  uint64_t idleMs_;
  size_t maxSessions_;
  int sniff_;
  Napi::FunctionReference callback_;
  uv_loop_t* loop_ = nullptr;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  int open_ = 0;
  bool closed_ = false;
  sockaddr_storage bound_{};
  socklen_t boundLen_ = 0;
  uint64_t nextId_ = 0;
  std::unordered_map<std::string, Session*> byKey_;
  std::unordered_map<uint64_t, Session*> byId_;
  std::unordered_map<std::string, DstSocket*> dsts_;
  Session* oldest_ = nullptr;
  Session* newest_ = nullptr;
  std::vector<Event> events_;
  Batch batch_;
  int icmp4_ = -1, icmp6_ = -1;
  double received_ = 0, overCap_ = 0, queueDropped_ = 0, noOriginalDst_ = 0;
};

// new UdpRelay(fd, { transparent, idleTimeoutMs, maxSessions, sniffDatagrams }, callback):
// takes over a bound UDP socket from createListener({ udp: true }); callback(events) gets
// arrays of { type: "session" | "datagram" | "end", id, … }.
class UdpRelayWrap : public Napi::ObjectWrap<UdpRelayWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpRelay",
                       {InstanceMethod("forward", &UdpRelayWrap::Forward), InstanceMethod("reject", &UdpRelayWrap::Reject),
                        InstanceMethod("end", &UdpRelayWrap::End), InstanceMethod("close", &UdpRelayWrap::Close),
                        InstanceMethod("stats", &UdpRelayWrap::Stats), InstanceMethod("address", &UdpRelayWrap::Address),
                        InstanceMethod("setLimits", &UdpRelayWrap::SetLimits)});
  }

  explicit UdpRelayWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpRelayWrap>(info) {
    Napi::Env env = info.Env();
    int64_t fd = 0, idle = 0, maxSessions = 0, sniff = 0;
    if (info.Length() < 3 || !info[1].IsObject() || !info[2].IsFunction()) {
      ArgError(env, "UdpRelay(fd, options, callback)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[1].As<Napi::Object>();
    if (!IntArg(info[0], "fd", 0, INT32_MAX, &fd) || !IntArg(o.Get("idleTimeoutMs"), "options.idleTimeoutMs", 1, 86400000, &idle) ||
        !IntArg(o.Get("maxSessions"), "options.maxSessions", 1, 10000000, &maxSessions) ||
        !IntArg(o.Get("sniffDatagrams"), "options.sniffDatagrams", 1, 64, &sniff)) {
      return;
    }
    int type = 0;
    socklen_t tlen = sizeof type;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_DGRAM) {
      ArgError(env, "fd is not a UDP socket").ThrowAsJavaScriptException();
      return;
    }
    relay_ = new UdpRelay(env, static_cast<int>(fd), o.Get("transparent").ToBoolean().Value(), static_cast<uint64_t>(idle),
                          static_cast<size_t>(maxSessions), static_cast<int>(sniff), info[2].As<Napi::Function>());
    int rc = relay_->Start();
    if (rc != 0) {
      delete relay_;
      relay_ = nullptr;
      ErrnoError(env, FromUv(rc), "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    napi_add_env_cleanup_hook(env, OnEnvGone, this);
  }

  ~UdpRelayWrap() override {
    if (relay_ != nullptr) {
      napi_remove_env_cleanup_hook(Env(), OnEnvGone, this);
      relay_->Close();
    }
  }

 private:
  static void OnEnvGone(void* arg) {
    auto* w = static_cast<UdpRelayWrap*>(arg);
    if (w->relay_ != nullptr) w->relay_->Close();
    w->relay_ = nullptr;
  }

  // The session named by info[0]; null with an exception pending when it is not one, or
  // undefined-able `missing` when it simply ended.
  Session* SessionArg(const Napi::CallbackInfo& info) {
    int64_t id = 0;
    if (info.Length() < 1 || !IntArg(info[0], "id", 1, (1LL << 53), &id)) return nullptr;
    if (relay_ == nullptr) return nullptr;
    return relay_->Find(static_cast<uint64_t>(id));
  }

  // forward(id, connectOptions) → { localPort, portFellBack }, or false when the session is gone.
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Session* s = SessionArg(info);
    if (env.IsExceptionPending()) return env.Undefined();
    if (s == nullptr) return Napi::Boolean::New(env, false);
    if (s->state != State::Pending) {
      ArgError(env, "the session was already forwarded or rejected").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    ConnectParams params;
    if (!ParseConnectOptions(env, info[1], &params)) return env.Undefined();
    if (params.remote.ss_family != s->client.ss_family) {
      ArgError(env, "the target's address family differs from the client's").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const char* syscall = "connect";
    int localPort = 0;
    bool fellBack = false;
    int err = relay_->Forward(s, params, &syscall, &localPort, &fellBack);
    if (err != 0) {
      ErrnoError(env, err, syscall).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("localPort", localPort);
    out.Set("portFellBack", fellBack);
    return out;
  }

  // reject(id, icmp): drops the session's datagrams until it idles out; with icmp, answers
  // them with port unreachable. False when the session is gone.
  Napi::Value Reject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Session* s = SessionArg(info);
    if (env.IsExceptionPending()) return env.Undefined();
    if (s == nullptr) return Napi::Boolean::New(env, false);
    relay_->Reject(s, info.Length() > 1 && info[1].ToBoolean().Value());
    return Napi::Boolean::New(env, true);
  }

  // end(id) → the session's summary (reason "closed"), or null when it is gone.
  Napi::Value End(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Session* s = SessionArg(info);
    if (env.IsExceptionPending()) return env.Undefined();
    if (s == nullptr) return env.Null();
    return relay_->EventObject(env, relay_->EndNow(s, "closed"));
  }

  // close() → summaries of the sessions it ended; the socket is closed once libuv lets go.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (relay_ == nullptr) return out;
    std::vector<Event> ended = relay_->Close();
    for (size_t i = 0; i < ended.size(); i++) out.Set(static_cast<uint32_t>(i), relay_->EventObject(env, ended[i]));
    napi_remove_env_cleanup_hook(env, OnEnvGone, this);
    relay_ = nullptr;
    return out;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    if (relay_ == nullptr) return info.Env().Null();
    return relay_->Stats(info.Env());
  }

  Napi::Value Address(const Napi::CallbackInfo& info) {
    if (relay_ == nullptr) return info.Env().Null();
    return relay_->Bound(info.Env());
  }

  // setLimits(idleTimeoutMs, maxSessions): a redeploy with other limits keeps the socket.
  Napi::Value SetLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t idle = 0, maxSessions = 0;
    if (info.Length() < 2 || !IntArg(info[0], "idleTimeoutMs", 1, 86400000, &idle) ||
        !IntArg(info[1], "maxSessions", 1, 10000000, &maxSessions)) {
      return env.Undefined();
    }
    if (relay_ != nullptr) relay_->SetLimits(static_cast<uint64_t>(idle), static_cast<size_t>(maxSessions));
    return env.Undefined();
  }

  UdpRelay* relay_ = nullptr;
};

}  // namespace

void InitUdp(Napi::Env env, Napi::Object exports) { exports.Set("UdpRelay", UdpRelayWrap::Define(env)); }

}  // namespace traffic
