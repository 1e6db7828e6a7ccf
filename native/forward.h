// Upstream connections and the splice pump (native/forward.cc), added to the addon's exports.
#pragma once
#include <napi.h>

namespace traffic {
void InitForward(Napi::Env env, Napi::Object exports);
}
