/* record: `ember record`, a one-shot CPU recording of selected processes to a pprof file and an
 * optional SVG flame graph. */
#ifndef EMBER_RECORD_H
#define EMBER_RECORD_H

/* Runs the command; argv starts after the word "record". Returns the exit status:
 * 0 on success (a target exiting is normal), 2 on bad input or missing privileges, 1 on a
 * runtime failure. */
int record_main(int argc, char **argv);

#endif
