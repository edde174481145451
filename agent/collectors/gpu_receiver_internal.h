/* gpu_receiver_internal: the protocol parser without a socket or a thread, for the fuzzer
 * (tests/fuzz/fuzz_gpu_protocol.c). Not for the agent. */
#ifndef EMBER_GPU_RECEIVER_INTERNAL_H
#define EMBER_GPU_RECEIVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct gpu_receiver;

/* A receiver with one connected client (pid 1, uid 0) and default limits; free it with
 * gpu_receiver_stop(). */
struct gpu_receiver *gpu_receiver_new_detached(void);
/* Gives the client's next len bytes to the parser, as one recv() would. Returns 0, or < 0
 * where the agent would disconnect the client (the caller then stops feeding). */
int gpu_receiver_feed(struct gpu_receiver *r, const uint8_t *data, size_t len);

#endif
