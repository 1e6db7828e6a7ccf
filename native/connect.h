// Upstream connections (native/connect.cc) and the splice pump (native/splice.cc), added
// to the addon's exports, and the socket helpers the pump and the UDP relay
// (native/udp.cc) share.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <sys/socket.h>

namespace traffic {
void InitConnect(Napi::Env env, Napi::Object exports);
void InitSplicePump(Napi::Env env, Napi::Object exports);

// Fills `ss` from an address text and port; false when the text is no IP address.
bool ToSockaddr(const std::string& text, int port, sockaddr_storage* ss, socklen_t* len);
int PortOf(const sockaddr_storage& ss);
// The outcome of a finished handshake: 0, or its errno.
int ConnectError(int fd);
// The local port a socket is bound to, 0 when unknown.
int LocalPortOf(int fd);

// What an upstream connect needs, parsed once from JS options.
struct ConnectParams {
  sockaddr_storage remote{};
  socklen_t remoteLen = 0;
  bool bindLocal = false;
  sockaddr_storage local{};
  socklen_t localLen = 0;
  bool transparent = false;
  uint32_t mark = 0;
  bool portFallback = true;
  int timeoutMs = 0;
};

// A started connect: a non-blocking socket whose connect is under way (or done, always so
// for SOCK_DGRAM), or the errno and call that failed.
struct ConnectStart {
  int fd = -1;
  int err = 0;
  const char* syscall = "connect";
  bool fellBack = false;
};

// Socket (SOCK_STREAM or SOCK_DGRAM), options, bind (falling back to any port when the
// client's own is taken), non-blocking connect.
ConnectStart StartConnect(const ConnectParams& p, int type);

// { address, port, localAddress?, localPort?, transparent?, mark?, portFallback?,
// timeoutMs? }; false with a JS exception pending when something is wrong.
bool ParseConnectOptions(Napi::Env env, const Napi::Value& value, ConnectParams* p);
}  // namespace traffic
