/* agent: `ember agent`, continuous profiling of the selected services with one profile per
 * (service, family) each interval, delivered to a push sink (Pyroscope/Alloy) or the local
 * directory, with self-metrics. */
#ifndef EMBER_AGENT_H
#define EMBER_AGENT_H

/* argv starts after the word "agent". Returns the exit status: 0 after SIGINT/SIGTERM, 2 on
 * bad input or missing privileges, 1 on a runtime failure at start. */
int agent_main(int argc, char **argv);

#endif
