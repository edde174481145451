/* run: `ember run [options] -- CMD ARGS...`, a command started with allocation and GPU
 * instrumentation and profiled like the agent profiles a service. */
#ifndef EMBER_RUN_H
#define EMBER_RUN_H

/* Starts CMD and profiles it (and its children) as one service named after the command, until
 * it exits. SIGINT/SIGTERM are passed on to CMD. Returns CMD's exit status (128 + signal when
 * killed), 2 on bad input. argv starts after the word "run". */
int run_main(int argc, char **argv);

#endif
