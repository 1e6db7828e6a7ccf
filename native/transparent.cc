// Sockets Node cannot make on its own: listening sockets with options that must be set
// before bind (IP_TRANSPARENT for TPROXY, IP_FREEBIND, SO_REUSEPORT), and the original
// destination of a redirected connection (SO_ORIGINAL_DST). Thin on purpose: plain values
// in, plain values out, every failure an Error whose `code` is the errno name.
#include <napi.h>

#include "errors.h"
#include "connect.h"
#include "udp.h"
#include "hello-key.h"

#include <arpa/inet.h>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_FREEBIND
#define IP_FREEBIND 15
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

namespace {

using traffic::ArgError;
using traffic::ErrnoName;
using traffic::IntArg;


// What an operator can do about a failed call, by errno and call.
std::string Advice(int err, const std::string& what) {
  switch (err) {
    case EPERM:
    case EACCES:
      if (what.find("TRANSPARENT") != std::string::npos) {
        return "transparent sockets (TPROXY) need CAP_NET_ADMIN or CAP_NET_RAW: run Node-RED with "
               "AmbientCapabilities=CAP_NET_ADMIN (systemd) or as root, or use mode redirect/plain";
      }
      if (what.find("bind") != std::string::npos) {
        return "ports below 1024 need CAP_NET_BIND_SERVICE: choose a higher port or grant the capability";
      }
      return "the process lacks the privilege for this call (usually CAP_NET_ADMIN)";
    case EADDRINUSE:
      return "another socket already listens on this address and port: stop it, choose another port, "
             "or enable SO_REUSEPORT on both";
    case EADDRNOTAVAIL:
      return "the address is not configured on this host: use an address of this host, 0.0.0.0/::, "
             "or enable freebind";
    case EAFNOSUPPORT:
      return "this address family is not available on this host (IPv6 disabled?)";
    case ENOENT:
      return "no conntrack entry for this connection: it was not redirected by an iptables/nft "
             "REDIRECT or DNAT rule on this host (or conntrack is not loaded); connect through "
             "the rule, or use mode plain";
    case ENOPROTOOPT:
      return "the kernel does not know this option for the socket: netfilter conntrack for this "
             "address family is not loaded (nf_conntrack_ipv4/ipv6), or the socket is not TCP";
    case EBADF:
      return "the file descriptor is not open: the connection has already been closed";
    case ENOTSOCK:
      return "the file descriptor is not a socket";
    case ENOTCONN:
      return "the socket is not connected: only accepted connections have an original destination";
    case EMFILE:
    case ENFILE:
      return "out of file descriptors: raise the limit (LimitNOFILE) or lower the connection maximum";
    default:
      return "the kernel refused the call";
  }
}

// The listener's calls carry what an operator can do about their failure.
Napi::Error SysError(Napi::Env env, int err, const std::string& what) {
  return traffic::ErrnoError(env, err, what, Advice(err, what));
}



bool FdArg(const Napi::CallbackInfo& info, int* fd) {
  if (info.Length() < 1) {
    ArgError(info.Env(), "fd is required").ThrowAsJavaScriptException();
    return false;
  }
  int64_t v = 0;
  if (!IntArg(info[0], "fd", 0, INT_MAX, &v)) return false;
  *fd = static_cast<int>(v);
  return true;
}

Napi::Object AddressObject(Napi::Env env, const sockaddr_storage& ss) {
  Napi::Object out = Napi::Object::New(env);
  char text[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    out.Set("address", text);
    out.Set("port", ntohs(sin->sin_port));
    out.Set("family", 4);
  } else {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    // An IPv4 connection on a dual-stack socket: report it as the IPv4 it is.
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], text, sizeof text);
      out.Set("family", 4);
    } else {
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
      out.Set("family", 6);
    }
    out.Set("address", text);
    out.Set("port", ntohs(sin6->sin6_port));
  }
  return out;
}

bool SetIntOption(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0;
}

// Optional boolean field of the options object; false after throwing when mistyped.
bool BoolOption(const Napi::Object& options, const char* key, bool fallback, bool* out) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) {
    *out = fallback;
    return true;
  }
  if (!v.IsBoolean()) {
    ArgError(options.Env(), std::string("options.") + key + " must be a boolean").ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

// createListener({ address, port, transparent, freebind, reuseAddr, reusePort, v6Only, backlog, udp })
// returns the fd of a non-blocking listening TCP socket, for net.Server.listen({ fd }), or
// with `udp` of a bound UDP socket for a UdpRelay (native/udp.cc).
Napi::Value CreateListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    ArgError(env, "createListener expects an options object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Value addressValue = options.Get("address");
  if (!addressValue.IsString()) {
    ArgError(env, "options.address must be an IP address string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string address = addressValue.As<Napi::String>().Utf8Value();
  // inet_pton stops at a NUL: "127.0.0.1\0anything" must not pass as 127.0.0.1.
  if (address.find('\0') != std::string::npos) {
    ArgError(env, "options.address must not contain a NUL character").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t port = 0;
  if (!IntArg(options.Get("port"), "options.port", 0, 65535, &port)) return env.Undefined();
  int64_t backlog = 511;
  if (!options.Get("backlog").IsUndefined() && !IntArg(options.Get("backlog"), "options.backlog", 1, 65535, &backlog)) {
    return env.Undefined();
  }
  bool transparent = false, freebind = false, reuseAddr = true, reusePort = false, v6Only = false, udp = false;
  if (!BoolOption(options, "udp", false, &udp) || !BoolOption(options, "transparent", false, &transparent) || !BoolOption(options, "freebind", false, &freebind) ||
      !BoolOption(options, "reuseAddr", true, &reuseAddr) || !BoolOption(options, "reusePort", false, &reusePort) ||
      !BoolOption(options, "v6Only", false, &v6Only)) {
    return env.Undefined();
  }

  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t len = 0;
  int family = AF_INET;
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, address.c_str(), &sin6->sin6_addr) == 1) {
    family = AF_INET6;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    ArgError(env, "options.address is not an IPv4 or IPv6 address: " + address.substr(0, 64)).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  int fd = udp ? socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP)
               : socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    SysError(env, errno, "socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto fail = [&](const std::string& what) -> Napi::Value {
    int err = errno;
    close(fd);
    SysError(env, err, what).ThrowAsJavaScriptException();
    return env.Undefined();
  };
  if (reuseAddr && !SetIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)) return fail("setsockopt SO_REUSEADDR");
  if (reusePort && !SetIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)) return fail("setsockopt SO_REUSEPORT");
  if (family == AF_INET6 && !SetIntOption(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6Only ? 1 : 0)) {
    return fail("setsockopt IPV6_V6ONLY");
  }
  if (transparent) {
    // On a dual-stack socket IPv4 connections arrive too; both options set the same
    // per-socket flag, so the one for the socket's own family is enough.
    if (family == AF_INET ? !SetIntOption(fd, SOL_IP, IP_TRANSPARENT, 1)
                          : !SetIntOption(fd, SOL_IPV6, IPV6_TRANSPARENT, 1)) {
      return fail(family == AF_INET ? "setsockopt IP_TRANSPARENT" : "setsockopt IPV6_TRANSPARENT");
    }
  }
  if (freebind) {
    if (family == AF_INET ? !SetIntOption(fd, SOL_IP, IP_FREEBIND, 1) : !SetIntOption(fd, SOL_IPV6, IPV6_FREEBIND, 1)) {
      return fail("setsockopt IP_FREEBIND");
    }
  }
  if (udp) {
    // One socket takes every client's datagrams, bursts of new sessions included: a
    // default-sized buffer (~200 datagrams) would drop them while JS announces sessions.
    // FORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it, the capped size.
    int want = 8 << 20;
    if (!SetIntOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, want)) SetIntOption(fd, SOL_SOCKET, SO_RCVBUF, want);
  }
  if (udp && transparent) {
    // A TPROXY'd datagram keeps its foreign destination; only these options tell it per
    // datagram (a UDP socket has no accepted socket whose local address would say it).
    // On a dual-stack socket IPv4 datagrams report through the IPv4 option.
    if (!SetIntOption(fd, SOL_IP, IP_RECVORIGDSTADDR, 1) && family == AF_INET) return fail("setsockopt IP_RECVORIGDSTADDR");
    if (family == AF_INET6 && !SetIntOption(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, 1)) return fail("setsockopt IPV6_RECVORIGDSTADDR");
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind");
  if (!udp && listen(fd, static_cast<int>(backlog)) != 0) return fail("listen");
  return Napi::Number::New(env, fd);
}

// getOriginalDst(fd): the destination the client dialled before a REDIRECT/DNAT rule
// rewrote it, read from conntrack.
Napi::Value GetOriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, &fd)) return env.Undefined();
  sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    SysError(env, errno, "getsockname").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) {
    ArgError(env, "fd is not an IPv4 or IPv6 socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool mapped = local.ss_family == AF_INET6 &&
                IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
  sockaddr_storage dst;
  std::memset(&dst, 0, sizeof dst);
  if (local.ss_family == AF_INET || mapped) {
    // IPv4 conntrack, also for an IPv4 connection on a dual-stack socket: the kernel
    // looks the entry up by the socket's IPv4 tuple.
    socklen_t dlen = sizeof(sockaddr_in);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      SysError(env, errno, "getsockopt SO_ORIGINAL_DST").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    dst.ss_family = AF_INET;
  } else {
    socklen_t dlen = sizeof(sockaddr_in6);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      SysError(env, errno, "getsockopt IP6T_SO_ORIGINAL_DST").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    dst.ss_family = AF_INET6;
  }
  return AddressObject(env, dst);
}

Napi::Value AddressOf(const Napi::CallbackInfo& info, bool peer) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, &fd)) return env.Undefined();
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t len = sizeof ss;
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0) {
    SysError(env, errno, peer ? "getpeername" : "getsockname").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
    ArgError(env, "fd is not an IPv4 or IPv6 socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return AddressObject(env, ss);
}

// getLocalAddress(fd): under TPROXY the accepted socket's own address is the original
// destination.
Napi::Value GetLocalAddress(const Napi::CallbackInfo& info) { return AddressOf(info, false); }
Napi::Value GetPeerAddress(const Napi::CallbackInfo& info) { return AddressOf(info, true); }

// Appends "family,address,port" for one socket address (IPv4-mapped IPv6 as IPv4).
void AppendAddress(std::string& out, const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {0};
  char family = '4';
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
  } else {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
      family = '6';
    }
    port = ntohs(sin6->sin6_port);
  }
  out += family;
  out += ',';
  out += text;
  out += ',';
  out += std::to_string(port);
}

// acceptedInfo(fd, readOriginalDst): everything the listener needs about an accepted
// socket in one call, without exceptions on the hot path, as one string (one value to
// hand over instead of ten):
// "localFamily,localAddress,localPort,peerFamily,peerAddress,peerPort[,errno[,origFamily,origAddress,origPort]]"
// where errno 0 means the original destination follows.
// A failed original-destination read gives its errno; describeErrno() words it.
// A failed getsockname/getpeername throws: the connection is already gone.
Napi::Value AcceptedInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsBoolean()) {
    ArgError(env, "readOriginalDst must be a boolean").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool readOriginal = info[1].As<Napi::Boolean>().Value();
  sockaddr_storage local, peer;
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    SysError(env, errno, "getsockname").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  len = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    SysError(env, errno, "getpeername").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if ((local.ss_family != AF_INET && local.ss_family != AF_INET6) || peer.ss_family != local.ss_family) {
    ArgError(env, "fd is not an IPv4 or IPv6 socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string out;
  out.reserve(128);
  AppendAddress(out, local);
  out += ',';
  AppendAddress(out, peer);
  if (!readOriginal) return Napi::String::New(env, out);
  bool mapped = local.ss_family == AF_INET6 &&
                IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
  sockaddr_storage dst;
  std::memset(&dst, 0, sizeof dst);
  int rc;
  if (local.ss_family == AF_INET || mapped) {
    socklen_t dlen = sizeof(sockaddr_in);
    rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen);
    dst.ss_family = AF_INET;
  } else {
    socklen_t dlen = sizeof(sockaddr_in6);
    rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen);
    dst.ss_family = AF_INET6;
  }
  if (rc != 0) {
    out += ',';
    out += std::to_string(errno);
    return Napi::String::New(env, out);
  }
  out += ",0,";
  AppendAddress(out, dst);
  return Napi::String::New(env, out);
}

// describeErrno(errno, syscall): { code, message } as the thrown errors word them.
Napi::Value DescribeErrno(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t err = 0;
  if (info.Length() < 2 || !info[1].IsString()) {
    ArgError(env, "describeErrno(errno, syscall)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!IntArg(info[0], "errno", 1, 4095, &err)) return env.Undefined();
  std::string what = info[1].As<Napi::String>().Utf8Value();
  Napi::Object out = Napi::Object::New(env);
  out.Set("code", ErrnoName(static_cast<int>(err)));
  out.Set("message", traffic::ErrnoMessage(static_cast<int>(err), what, Advice(static_cast<int>(err), what)));
  return out;
}

// closeFd(fd): for a listener fd that never reached net.Server (listen failed).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, &fd)) return env.Undefined();
  int type = 0;
  socklen_t len = sizeof type;
  // Only sockets: a wrong number must not close a file some other code owns.
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    SysError(env, errno, "getsockopt SO_TYPE").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (close(fd) != 0) SysError(env, errno, "close").ThrowAsJavaScriptException();
  return env.Undefined();
}

// socketOptions(fd): the transparent/freebind/reuse flags actually set, for status and tests.
Napi::Value SocketOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!FdArg(info, &fd)) return env.Undefined();
  sockaddr_storage ss;
  socklen_t slen = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &slen) != 0) {
    SysError(env, errno, "getsockname").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool v6 = ss.ss_family == AF_INET6;
  auto get = [&](int level, int name) -> int {
    int v = 0;
    socklen_t len = sizeof v;
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("transparent", v6 ? get(SOL_IPV6, IPV6_TRANSPARENT) > 0 : get(SOL_IP, IP_TRANSPARENT) > 0);
  out.Set("freebind", v6 ? get(SOL_IPV6, IPV6_FREEBIND) > 0 : get(SOL_IP, IP_FREEBIND) > 0);
  out.Set("reuseAddr", get(SOL_SOCKET, SO_REUSEADDR) > 0);
  out.Set("reusePort", get(SOL_SOCKET, SO_REUSEPORT) > 0);
  out.Set("v6Only", v6 && get(IPPROTO_IPV6, IPV6_V6ONLY) > 0);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("createListener", Napi::Function::New(env, CreateListener, "createListener"));
  exports.Set("getOriginalDst", Napi::Function::New(env, GetOriginalDst, "getOriginalDst"));
  exports.Set("getLocalAddress", Napi::Function::New(env, GetLocalAddress, "getLocalAddress"));
  exports.Set("getPeerAddress", Napi::Function::New(env, GetPeerAddress, "getPeerAddress"));
  exports.Set("acceptedInfo", Napi::Function::New(env, AcceptedInfo, "acceptedInfo"));
  exports.Set("describeErrno", Napi::Function::New(env, DescribeErrno, "describeErrno"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("socketOptions", Napi::Function::New(env, SocketOptions, "socketOptions"));
  traffic::InitConnect(env, exports);
  traffic::InitSplicePump(env, exports);
  traffic::InitUdp(env, exports);
  traffic::InitHelloKey(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace

NODE_API_MODULE(traffic_native, Init)
