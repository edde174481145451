# pprofdump: the independent pprof decoder every Ember test uses to read profiles back.
# Built offline in GOPATH mode against Debian's golang-github-google-pprof-dev; nothing is
# downloaded. Other CMake files find the binary through ${EMBER_PPROFDUMP} and should add a
# dependency on the `pprofdump` target.
find_program(EMBER_GO go REQUIRED)
set(EMBER_GOPATH /usr/share/gocode CACHE PATH "GOPATH holding github.com/google/pprof")
if(NOT EXISTS ${EMBER_GOPATH}/src/github.com/google/pprof/profile/profile.go)
  message(FATAL_ERROR "pprofdump: ${EMBER_GOPATH}/src/github.com/google/pprof not found "
                      "(install golang-github-google-pprof-dev)")
endif()

set(EMBER_PPROFDUMP ${CMAKE_BINARY_DIR}/tests/tools/pprofdump CACHE INTERNAL "pprofdump binary")
set(_pprofdump_src ${CMAKE_CURRENT_SOURCE_DIR}/pprofdump/main.go)
add_custom_command(
  OUTPUT ${EMBER_PPROFDUMP}
  COMMAND ${CMAKE_COMMAND} -E env GO111MODULE=off GOPATH=${EMBER_GOPATH} GOFLAGS=
          GOCACHE=${CMAKE_CURRENT_BINARY_DIR}/gocache GOTOOLCHAIN=local GOPROXY=off
          ${EMBER_GO} build -o ${EMBER_PPROFDUMP} ${_pprofdump_src}
  DEPENDS ${_pprofdump_src}
  COMMENT "go build pprofdump"
  VERBATIM)
add_custom_target(pprofdump ALL DEPENDS ${EMBER_PPROFDUMP})
