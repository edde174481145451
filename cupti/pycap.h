/* pycap: the calling thread's Python frames, read in process at a CUDA launch
 * (../shared/PYTHON.md section 6).
 *
 * The interpreter is found in this process by its exported symbols (_PyRuntime; Py_Version,
 * else the 3.10 library's name) and described with cpython/pylayout (the 3.10-3.12 tables,
 * _Py_DebugOffsets read in place on 3.13+), the same description the agent's BPF walk uses. A
 * capture takes the thread's own thread state from PyGILState_GetThisThreadState() (a
 * thread-specific lookup that works while the thread has released the GIL, as PyTorch does
 * around dispatch), checks that it names this thread, and walks its frame chain read-only:
 * while the thread sits in C only it can push or pop its frames, and each frame holds its code
 * object. No other C-API call, never the GIL. Each frame is written as the BPF walk writes it
 * (code object address | EMBER_PYF_*, validation key, instruction), so the agent resolves and
 * merges launch stacks with the code that does it for CPU samples.
 *
 * Debug and free-threaded builds and versions without a table are refused (native stacks only,
 * one log line). Thread-safe; a capture allocates nothing. */
#ifndef EMBER_CUPTI_PYCAP_H
#define EMBER_CUPTI_PYCAP_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember.h"

/* True once an interpreter of this process is described and initialised. Until one is found,
 * looks again at most once a second (CPython may be loaded after CUDA); a refused build is
 * final. Cheap after the first answer. */
bool pycap_ready(void);

/* The calling thread's frames, innermost first, into out[max] (max <= EMBER_PY_MAX_FRAMES).
 * *ret_status: enum ember_py_status (EMBER_PY_NO_TSTATE for a thread without Python frames
 * state, such as one that C++ created). Returns the number of frames. */
size_t pycap_capture(struct ember_py_frame *out, size_t max, uint32_t *ret_status);

/* The PY_VERSION_HEX of the interpreter found, 0 if none. */
uint32_t pycap_version(void);

/* Tests: forget what was found. Not thread-safe. */
void pycap_reset(void);

#endif
