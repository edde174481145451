/* log: leveled logging to stderr for the whole agent.
 *
 * One global level, set once at start (log_set_level). Library-style modules log at debug and
 * return -errno; the orchestrator that decides what to do logs once at info/warn/error.
 * Thread-safe: each message is written with a single write(2). */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info" or "debug"; returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *ret_level);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
