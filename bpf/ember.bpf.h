/* ember.bpf.h: BPF-only helpers shared by Ember's BPF programs. vmlinux.h has no errno.h. */
#ifndef EMBER_BPF_H
#define EMBER_BPF_H

#define ENOENT 2
#define EFAULT 14
#define EEXIST 17
#define E2BIG 7
#define ENOMEM 12

#endif
