// ClientHello fingerprint cache keys (native/hello-key.cc), added to the addon's exports.
#pragma once
#include <node_api.h>

namespace traffic {
void InitHelloKey(napi_env env, napi_value exports);
}
