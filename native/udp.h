// UDP sessions for transparent capture and forwarding (native/udp.cc), added to the addon's exports.
#pragma once
#include <napi.h>

namespace traffic {
void InitUdp(Napi::Env env, Napi::Object exports);
}
