# bpf_object(NAME SOURCE): compiles SOURCE (a *.bpf.c) with clang into NAME.bpf.o, generates
# NAME.skel.h with `bpftool gen skeleton`, and defines an INTERFACE target NAME_skel that adds
# the skeleton's directory to the include path. vmlinux.h is generated once per build tree from
# the running kernel's BTF (/sys/kernel/btf/vmlinux); CO-RE relocations make the objects
# portable to other BTF kernels.
find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

set(BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf-gen)
file(MAKE_DIRECTORY ${BPF_GEN_DIR})
set(VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH "BTF used to generate vmlinux.h")
if(NOT EXISTS ${VMLINUX_BTF})
  message(FATAL_ERROR "ember: ${VMLINUX_BTF} not found: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)")
endif()
# Generated at configure time: it depends only on the running kernel, not on our sources.
if(NOT EXISTS ${BPF_GEN_DIR}/vmlinux.h)
  execute_process(COMMAND ${BPFTOOL} btf dump file ${VMLINUX_BTF} format c
    OUTPUT_FILE ${BPF_GEN_DIR}/vmlinux.h.tmp RESULT_VARIABLE vmlinux_rc)
  if(NOT vmlinux_rc EQUAL 0)
    message(FATAL_ERROR "ember: bpftool could not dump ${VMLINUX_BTF} (exit ${vmlinux_rc})")
  endif()
  file(RENAME ${BPF_GEN_DIR}/vmlinux.h.tmp ${BPF_GEN_DIR}/vmlinux.h)
endif()

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(BPF_TARGET_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BPF_TARGET_ARCH arm64)
else()
  message(FATAL_ERROR "ember: unsupported architecture ${CMAKE_SYSTEM_PROCESSOR}")
endif()

function(bpf_object name src)
  set(obj ${BPF_GEN_DIR}/${name}.bpf.o)
  set(skel ${BPF_GEN_DIR}/${name}.skel.h)
  get_filename_component(src_abs ${src} ABSOLUTE)
  get_filename_component(src_dir ${src_abs} DIRECTORY)
  file(GLOB bpf_headers ${src_dir}/*.h)
  add_custom_command(OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${BPF_TARGET_ARCH}
            -Wall -Wno-unused-function
            -I${BPF_GEN_DIR} -I${src_dir} ${LIBBPF_CFLAGS}
            -idirafter /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}
            -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs} ${bpf_headers} ${BPF_GEN_DIR}/vmlinux.h
    COMMENT "BPF ${name}.bpf.c" VERBATIM)
  add_custom_command(OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "Skeleton ${name}.skel.h" VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${BPF_GEN_DIR} ${src_dir})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF PkgConfig::LIBELF PkgConfig::ZLIB)
endfunction()
