/* pycap: in-process Python frames at a launch (see pycap.h). */
#include "pycap.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clog.h"
#include "pylayout.h"

/* Highest user address on x86-64 with 4-level paging; a pointer past it is not a frame. */
#define USER_TOP (1ull << 47)
/* Bytes of _PyRuntime handed to the _Py_DebugOffsets decoder when the symbol has no size. */
#define DEBUG_OFFSETS_READ 4096u

enum { PC_UNKNOWN = 0, PC_READY = 1, PC_REFUSED = -1 };

static struct {
	int state;                  /* PC_*, read without the lock once not PC_UNKNOWN */
	uint64_t next_try_ns;
	struct ember_py_proc p;
	uint32_t version_hex;
	void *(*this_thread_state)(void);
	int (*is_initialized)(void);
	int (*is_finalizing)(void);
} pc;

static pthread_mutex_t pc_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool ptr_ok(uint64_t v)
{
	return v && v < USER_TOP && !(v & 7);
}

static uint64_t ld64(uint64_t base, uint32_t off)
{
	uint64_t v;

	memcpy(&v, (const void *)(uintptr_t)(base + off), sizeof(v));
	return v;
}

/* 3.10 has no Py_Version: its library or executable says "python3.10" in its name. */
static uint32_t version_from_name(const void *runtime)
{
	char exe[256];
	const char *name = NULL;
	Dl_info di;
	ssize_t n;

	if (dladdr(runtime, &di) && di.dli_fname && *di.dli_fname)
		name = di.dli_fname;
	if (!name || !strstr(name, "python")) {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n <= 0)
			return 0;
		exe[n] = '\0';
		name = exe;
	}
	const char *b = strrchr(name, '/');

	b = b ? b + 1 : name;
	if (strstr(b, "python3.10"))
		return 0x030a0000u;
	return 0;
}

static int refuse(const char *why, uint32_t version_hex)
{
	clog_info("python: interpreter %u.%u in this process not read (%s): launch stacks stay "
		  "native", (version_hex >> 24) & 0xff, (version_hex >> 16) & 0xff, why);
	pc.state = PC_REFUSED;
	return PC_REFUSED;
}

/* Called with pc_lock held. */
static int find_interpreter(void)
{
	const unsigned long *py_version;
	struct pyoffsets off;
	const void *runtime;
	uint32_t hex, minor;
	ElfW(Sym) *sym = NULL;
	Dl_info di;
	size_t len = DEBUG_OFFSETS_READ;
	int err;

	runtime = dlsym(RTLD_DEFAULT, "_PyRuntime");
	if (!runtime)
		return PC_UNKNOWN;
	py_version = dlsym(RTLD_DEFAULT, "Py_Version");
	hex = py_version ? (uint32_t)*py_version : version_from_name(runtime);
	if (!hex)
		return refuse("unknown version", 0);
	if (dlsym(RTLD_DEFAULT, "_Py_RefTotal") || dlsym(RTLD_DEFAULT, "_Py_GetRefTotal"))
		return refuse("a debug build", hex);
	minor = (hex >> 16) & 0xff;
	if (minor >= 13) {
		if (dladdr1(runtime, &di, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size &&
		    sym->st_size < len)
			len = sym->st_size;
		err = pyoffsets_from_debug(runtime, len, hex, &off);
	} else {
		err = pyoffsets_for_version(hex, &off);
	}
	if (err)
		return refuse(minor >= 13 ? "its _Py_DebugOffsets are not known" : "no table for it",
			      hex);
	if (pylayout_describe(&off, (uint64_t)(uintptr_t)runtime, &pc.p))
		return refuse("offsets beyond the walk's reads", hex);
	pc.this_thread_state = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
	pc.is_initialized = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
	pc.is_finalizing = (int (*)(void))dlsym(RTLD_DEFAULT,
						minor >= 13 ? "Py_IsFinalizing" : "_Py_IsFinalizing");
	if (!pc.this_thread_state || !pc.is_initialized)
		return refuse("PyGILState_GetThisThreadState or Py_IsInitialized missing", hex);
	pc.version_hex = hex;
	clog_debug("python: %u.%u found, launch stacks carry Python frames", (hex >> 24) & 0xff,
		   minor);
	pc.state = PC_READY;
	return PC_READY;
}

bool pycap_ready(void)
{
	int st = __atomic_load_n(&pc.state, __ATOMIC_ACQUIRE);
	uint64_t now;

	if (st == PC_UNKNOWN) {
		now = mono_ns();
		if (now < __atomic_load_n(&pc.next_try_ns, __ATOMIC_RELAXED))
			return false;
		pthread_mutex_lock(&pc_lock);
		st = pc.state;
		if (st == PC_UNKNOWN && now >= pc.next_try_ns) {
			st = find_interpreter();
			pc.next_try_ns = now + 1000000000ull;
		}
		pthread_mutex_unlock(&pc_lock);
	}
	if (st != PC_READY)
		return false;
	return pc.is_initialized() && !(pc.is_finalizing && pc.is_finalizing());
}

uint32_t pycap_version(void)
{
	return __atomic_load_n(&pc.state, __ATOMIC_ACQUIRE) == PC_READY ? pc.version_hex : 0;
}

void pycap_reset(void)
{
	memset(&pc, 0, sizeof(pc));
}

/* A field of the code object at code, 0 where the version has none (as the BPF walk reads
 * it). */
static uint64_t code_field(uint64_t code, uint16_t off, size_t width)
{
	uint64_t v = 0;

	if (off == EMBER_PY_NO_OFFSET || off > EMBER_PY_CODE_READ - width)
		return 0;
	memcpy(&v, (const void *)(uintptr_t)(code + off), width);
	return v;
}

size_t pycap_capture(struct ember_py_frame *out, size_t max, uint32_t *ret_status)
{
	const struct ember_py_proc *p = &pc.p;
	uint64_t ts, frame;
	size_t n = 0;

	*ret_status = EMBER_PY_NO_TSTATE;
	if (!pycap_ready())
		return 0;
	if (max > EMBER_PY_MAX_FRAMES)
		max = EMBER_PY_MAX_FRAMES;
	ts = (uint64_t)(uintptr_t)pc.this_thread_state();
	/* Its own state, bound to this thread: never another thread's (PYTHON.md 6). */
	if (!ptr_ok(ts) || ld64(ts, p->tstate_thread_id) != (uint64_t)pthread_self())
		return 0;
	frame = ld64(ts, p->tstate_frame);
	if (p->cframe_current_frame != EMBER_PY_NO_OFFSET)
		frame = ptr_ok(frame) ? ld64(frame, p->cframe_current_frame) : 0;
	*ret_status = EMBER_PY_COMPLETE;
	while (frame) {
		struct ember_py_frame *f;
		uint64_t prev, code, flags = 0;

		if (!ptr_ok(frame)) {
			*ret_status = EMBER_PY_UNREADABLE;
			break;
		}
		if (n >= max) {
			*ret_status = EMBER_PY_TRUNCATED;
			break;
		}
		f = &out[n];
		prev = ld64(frame, p->frame_previous);
		code = ld64(frame, p->frame_code) & ~(uint64_t)p->code_tag_mask;
		if (p->entry_kind >= EMBER_PY_ENTRY_OWNER) {
			uint8_t owner = *(const uint8_t *)(uintptr_t)(frame + p->frame_entry);

			if (owner == 3 || (p->entry_kind == EMBER_PY_ENTRY_OWNER_GE && owner > 3)) {
				*f = (struct ember_py_frame){ .code = EMBER_PYF_MARKER };
				n++;
				frame = prev;
				continue;
			}
		} else if (p->entry_kind == EMBER_PY_ENTRY_FLAG &&
			   *(const uint8_t *)(uintptr_t)(frame + p->frame_entry)) {
			flags = EMBER_PYF_ENTRY;
		}
		if (!ptr_ok(code) || code > EMBER_PYF_ADDR_MASK) {
			*ret_status = EMBER_PY_UNREADABLE;
			break;
		}
		if (p->instr_kind == EMBER_PY_INSTR_LASTI) {
			int32_t lasti;

			memcpy(&lasti, (const void *)(uintptr_t)(frame + p->frame_instr), sizeof(lasti));
			f->instr = lasti;
		} else {
			int64_t d = (int64_t)(ld64(frame, p->frame_instr) - code);

			f->instr = (d < -65536 || d > (1ll << 30)) ? INT32_MIN : (int32_t)d;
		}
		f->key = ember_py_code_key((uint32_t)code_field(code, p->code_firstlineno, 4),
					   code_field(code, p->code_filename, 8),
					   code_field(code, p->code_name, 8),
					   code_field(code, p->code_qualname, 8),
					   code_field(code, p->code_linetable, 8));
		f->code = code | flags;
		n++;
		frame = prev;
	}
	return n;
}
