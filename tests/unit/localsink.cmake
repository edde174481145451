# Local sink: paths, atomic writes, the byte bound and the restart scan, in a temp directory.
ember_unit_test(localsink SOURCES test_localsink.c LIBS ember_localsink)
