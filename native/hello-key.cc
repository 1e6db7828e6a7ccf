// The cache key of a ClientHello's fingerprint inputs (src/classify/fingerprint.ts):
// the same tabulation hash as the JavaScript fallback there, with tables of its own, in one
// call instead of a loop of typed-array reads and multiplies per value.
//
// JavaScript parses the hello and writes where its lists lie into slots of this addon's
// memory, through an Int32Array that helloKeyInit() gives it (the layout is HELLO_* in
// fingerprint.ts, mirrored below); helloKey() reads them, checks every range against the
// buffer, and writes the two keys back into the same slots. The function is
// raw Node-API, not node-addon-api: it runs once per ClientHello, and its wrapper objects
// would cost as much as the hashing.
#include "hello-key.h"

#include <node_api.h>
#include <sys/random.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace traffic {
namespace {

// Input slots, written by parseClientHello.
constexpr int kLegacyVersion = 0;
constexpr int kMaxVersion = 1;
constexpr int kFlags = 2;  // 1: SNI, 2: QUIC, 4: ALPN
constexpr int kAlpnEnds = 3;
constexpr int kCiphersStart = 4;
constexpr int kCiphersEnd = 5;
constexpr int kSigAlgsStart = 6;
constexpr int kSigAlgsEnd = 7;
constexpr int kGroupsStart = 8;
constexpr int kGroupsEnd = 9;
constexpr int kPointFormatsStart = 10;
constexpr int kPointFormatsEnd = 11;
constexpr int kExtensionsStart = 12;
constexpr int kExtensionsEnd = 13;
// Output slots: 1 when the keys were written (0: a range did not fit the buffer), then the
// key with the extension types as a set, and in order.
constexpr int kDone = 15;
constexpr int kSetA = 16;
constexpr int kSetB = 17;
constexpr int kOrdA = 18;
constexpr int kOrdB = 19;
constexpr int kSlots = 20;

constexpr uint32_t kMulA = 0x01000193u;
constexpr uint32_t kMulB = 0x5bd1e995u;

struct Tables {
  uint32_t a[65536];
  uint32_t b[65536];
};

// Drawn once per process (a thread-safe static: worker threads share them, read-only);
// null when there were no random bytes.

// One per Node.js environment (worker threads classify on their own): the shape slots,
// which JavaScript writes through an Int32Array over this memory. The memory outlives
// every use: it is freed when the environment is torn down, and nothing reads it through
// the array's buffer, so a detached buffer leaves it valid.
struct HelloKeyState {
  int32_t shape[20] = {};
};

bool FillRandom(void* p, size_t n) {
  auto* at = static_cast<unsigned char*>(p);
  while (n > 0) {
    ssize_t got = getrandom(at, n, 0);
    if (got <= 0) return false;
    at += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

// Per process, so that a client cannot craft a hello with another client's key. The GREASE
// values (RFC 8701) share one entry: a client's random GREASE picks do not change its key.
Tables* MakeTables() {
  auto* t = new Tables;
  if (!FillRandom(t, sizeof *t)) {
    delete t;
    return nullptr;
  }
  for (uint32_t g = 0x1a1a; g <= 0xfafa; g += 0x1010) {
    t->a[g] = t->a[0x0a0a];
    t->b[g] = t->b[0x0a0a];
  }
  return t;
}

struct Lanes {
  const Tables* t;
  uint32_t a = 0;
  uint32_t b = 0;
  void Fold(uint32_t v) {
    a = a * kMulA + t->a[v];
    b = b * kMulB + t->b[v];
  }
  // A number that is not a code point (a version, the flags, the ALPN ends, a count or a
  // length), as its two bytes: a byte is never a GREASE value, so no two numbers share an
  // entry (0x1a1a and 0xdada would, as 16-bit values).
  void FoldScalar(uint32_t v) {
    Fold((v >> 8) & 0xff);
    Fold(v & 0xff);
  }
};

inline uint32_t U16(const uint8_t* p) { return (static_cast<uint32_t>(p[0]) << 8) | p[1]; }

// A range the parser recorded, or none (start < 0); false when it lies outside the buffer.
bool Range(size_t len, int start, int end, bool* present) {
  *present = start >= 0;
  if (!*present) return true;
  return end >= start && static_cast<size_t>(end) <= len;
}

// Folds a list of 16-bit values in order: the same polynomial as one Horner chain
// (k = k * M + T[v] per value), computed as four chains over every fourth value with M^4,
// combined with M^3, M^2, M and 1, so that the multiplies of the four run side by side
// instead of each waiting on the last. Every position keeps a power of M of its own.
void FoldList(Lanes* k, const uint8_t* d, int64_t start, int64_t end) {
  constexpr uint32_t kMulA2 = kMulA * kMulA, kMulA3 = kMulA2 * kMulA, kMulA4 = kMulA2 * kMulA2;
  constexpr uint32_t kMulB2 = kMulB * kMulB, kMulB3 = kMulB2 * kMulB, kMulB4 = kMulB2 * kMulB2;
  const uint32_t* ta = k->t->a;
  const uint32_t* tb = k->t->b;
  uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
  uint32_t powA = 1, powB = 1;  // M^(values folded by the chains)
  int64_t p = start;
  for (; p + 7 < end; p += 8) {
    uint32_t v0 = U16(d + p), v1 = U16(d + p + 2), v2 = U16(d + p + 4), v3 = U16(d + p + 6);
    a0 = a0 * kMulA4 + ta[v0];
    a1 = a1 * kMulA4 + ta[v1];
    a2 = a2 * kMulA4 + ta[v2];
    a3 = a3 * kMulA4 + ta[v3];
    b0 = b0 * kMulB4 + tb[v0];
    b1 = b1 * kMulB4 + tb[v1];
    b2 = b2 * kMulB4 + tb[v2];
    b3 = b3 * kMulB4 + tb[v3];
    powA *= kMulA4;
    powB *= kMulB4;
  }
  k->a = k->a * powA + a0 * kMulA3 + a1 * kMulA2 + a2 * kMulA + a3;
  k->b = k->b * powB + b0 * kMulB3 + b1 * kMulB2 + b2 * kMulB + b3;
  for (; p + 1 < end; p += 2) k->Fold(U16(d + p));
}

napi_value Throw(napi_env env, const char* message) {
  napi_throw_error(env, "ERR_INVALID_ARG_VALUE", message);
  return nullptr;
}

const Tables* TheTables() {
  static const Tables* made = MakeTables();
  return made;
}

// helloKeyInit(): an Int32Array over this environment's shape slots, for the parser to
// write into. Throws when there are no random bytes for the tables (getrandom failed) or
// the runtime allows no external buffers, and JavaScript keeps its own key then.
napi_value HelloKeyInit(napi_env env, napi_callback_info info) {
  void* data = nullptr;
  napi_get_cb_info(env, info, nullptr, nullptr, nullptr, &data);
  auto* state = static_cast<HelloKeyState*>(data);
  if (TheTables() == nullptr) {
    napi_throw_error(env, "ENOSYS", "no random bytes for the ClientHello key tables (getrandom failed)");
    return nullptr;
  }
  napi_value buffer, array;
  if (napi_create_external_arraybuffer(env, state->shape, sizeof state->shape, nullptr, nullptr, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_int32_array, kSlots, buffer, 0, &array) != napi_ok) {
    napi_throw_error(env, "ENOTSUP", "this runtime allows no external buffers for the ClientHello shape");
    return nullptr;
  }
  return array;
}

// helloKey(hello: Buffer): the keys of the hello whose parts the shape slots locate, into
// the output slots with 1 into kDone, or 0 into kDone when a recorded range does not fit
// the buffer. Returns nothing: a returned value would be one more Node-API call per hello.
napi_value HelloKey(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void* state = nullptr;
  napi_get_cb_info(env, info, &argc, argv, nullptr, &state);
  const Tables* tables = TheTables();
  if (tables == nullptr) return Throw(env, "no ClientHello key tables (getrandom failed)");
  void* data = nullptr;
  size_t len = 0;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) return Throw(env, "helloKey needs a Buffer");
  int32_t* io = static_cast<HelloKeyState*>(state)->shape;
  const int32_t* in = io;
  const auto* d = static_cast<const uint8_t*>(data);
  bool sig, groups, points, exts, ciphers;
  bool fits = Range(len, in[kCiphersStart], in[kCiphersEnd], &ciphers) && Range(len, in[kSigAlgsStart], in[kSigAlgsEnd], &sig) &&
              Range(len, in[kGroupsStart], in[kGroupsEnd], &groups) && Range(len, in[kPointFormatsStart], in[kPointFormatsEnd], &points) &&
              Range(len, in[kExtensionsStart], in[kExtensionsEnd], &exts);
  if (!fits) {
    io[kDone] = 0;
    return nullptr;
  }
  // Extension types first, walked from the block's headers (the parser checked them; a
  // header cut short ends the walk).
  uint32_t count = 0, sumA = 0, sumB = 0, extA = 0, extB = 0;
  if (exts) {
    const int64_t end = in[kExtensionsEnd];
    for (int64_t p = in[kExtensionsStart]; p + 4 <= end; p += 4 + static_cast<int64_t>(U16(d + p + 2))) {
      uint32_t e = U16(d + p);
      uint32_t ta = tables->a[e], tb = tables->b[e];
      sumA += ta;
      sumB += tb;
      extA = extA * kMulA + ta;
      extB = extB * kMulB + tb;
      count++;
    }
  }
  Lanes k{tables};
  k.FoldScalar(static_cast<uint32_t>(in[kLegacyVersion]) & 0xffff);
  k.FoldScalar(static_cast<uint32_t>(in[kMaxVersion]) & 0xffff);
  k.FoldScalar(static_cast<uint32_t>(in[kFlags]) & 0xffff);
  k.FoldScalar(static_cast<uint32_t>(in[kAlpnEnds]) & 0xffff);
  k.FoldScalar(count & 0xffff);
  // Each list after its length, so that its bounds are part of the key; the first byte of
  // the tags below says which list follows (0x80-0xff, 0x40-0x7f, 0x20-0x3f).
  if (ciphers) {
    k.FoldScalar(static_cast<uint32_t>(in[kCiphersEnd] - in[kCiphersStart]) & 0xffff);
    FoldList(&k, d, in[kCiphersStart], in[kCiphersEnd]);
  }
  if (sig) {
    k.FoldScalar(0x10000u - 1u - (static_cast<uint32_t>(in[kSigAlgsEnd] - in[kSigAlgsStart]) & 0x7fff));
    FoldList(&k, d, in[kSigAlgsStart], in[kSigAlgsEnd]);
  }
  if (groups) {
    k.FoldScalar(0x8000u - 1u - (static_cast<uint32_t>(in[kGroupsEnd] - in[kGroupsStart]) & 0x3fff));
    FoldList(&k, d, in[kGroupsStart], in[kGroupsEnd]);
  }
  if (points) {
    k.FoldScalar(0x4000u - 1u - (static_cast<uint32_t>(in[kPointFormatsEnd] - in[kPointFormatsStart]) & 0x1fff));
    for (int64_t p = in[kPointFormatsStart]; p < in[kPointFormatsEnd]; p++) k.Fold(d[p]);
  }
  uint32_t a = k.a * kMulA, b = k.b * kMulB;
  io[kSetA] = static_cast<int32_t>(a + sumA);
  io[kSetB] = static_cast<int32_t>(b + sumB);
  io[kOrdA] = static_cast<int32_t>(a + extA);
  io[kOrdB] = static_cast<int32_t>(b + extB);
  io[kDone] = 1;
  return nullptr;
}

}  // namespace

void InitHelloKey(napi_env env, napi_value exports) {
  auto* state = new HelloKeyState();
  napi_add_env_cleanup_hook(env, [](void* p) { delete static_cast<HelloKeyState*>(p); }, state);
  napi_value fn;
  napi_create_function(env, "helloKeyInit", NAPI_AUTO_LENGTH, HelloKeyInit, state, &fn);
  napi_set_named_property(env, exports, "helloKeyInit", fn);
  napi_create_function(env, "helloKey", NAPI_AUTO_LENGTH, HelloKey, state, &fn);
  napi_set_named_property(env, exports, "helloKey", fn);
}

}  // namespace traffic
