/* clog: logging for libember_cupti.so, which runs inside someone else's process: one line per
 * message on stderr, prefixed "ember-cupti[PID]: ", at or above the level in EMBER_GPU_LOG
 * (error, warn, info, debug; default warn; "off" silences it). Thread-safe (one write(2)). */
#ifndef EMBER_CUPTI_CLOG_H
#define EMBER_CUPTI_CLOG_H

enum clog_level { CLOG_OFF = -1, CLOG_ERROR = 0, CLOG_WARN = 1, CLOG_INFO = 2, CLOG_DEBUG = 3 };

/* Reads EMBER_GPU_LOG once; later calls do nothing. */
void clog_init(void);
void clog_set_level(enum clog_level level);
int clog_enabled(enum clog_level level);
void clog_msg(enum clog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define clog_error(...) clog_msg(CLOG_ERROR, __VA_ARGS__)
#define clog_warn(...)  clog_msg(CLOG_WARN, __VA_ARGS__)
#define clog_info(...)  clog_msg(CLOG_INFO, __VA_ARGS__)
#define clog_debug(...) do { if (clog_enabled(CLOG_DEBUG)) clog_msg(CLOG_DEBUG, __VA_ARGS__); } while (0)

#endif
