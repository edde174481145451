# Self-metrics endpoint, scraped with the curl command line (a client Ember did not write).
find_program(EMBER_CURL curl REQUIRED)
ember_unit_test(metrics SOURCES test_metrics.c LIBS ember_metrics)
