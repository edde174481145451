/* A fake interpreter for unit.pyoffsets' refusal cases: _PyRuntime in .PyRuntime, and per
 * build Py_Version (FIX_VERSION), a debug build's _Py_RefTotal (FIX_DEBUG) or a 3.13-style
 * _Py_DebugOffsets header (FIX_DEBUG_OFFSETS = its version, FIX_FREE_THREADED). */
#include <stdint.h>

#define EXPORT __attribute__((visibility("default"), used))

#ifdef FIX_VERSION
EXPORT const unsigned long Py_Version = FIX_VERSION;
#endif
#ifdef FIX_DEBUG
EXPORT long _Py_RefTotal = 1;
#endif
#ifndef FIX_DEBUG_OFFSETS
#define FIX_DEBUG_OFFSETS 0
#endif
#ifndef FIX_FREE_THREADED
#define FIX_FREE_THREADED 0
#endif

struct fake_runtime {
	char cookie[8];
	uint64_t version;
	uint64_t free_threaded;
	char rest[4072];
};

EXPORT __attribute__((section(".PyRuntime"))) struct fake_runtime _PyRuntime = {
	.cookie = { 'x', FIX_DEBUG_OFFSETS ? 'd' : 0, 'e', 'b', 'u', 'g', 'p', 'y' },
	.version = FIX_DEBUG_OFFSETS,
	.free_threaded = FIX_FREE_THREADED,
	.rest = { 1 },
};
