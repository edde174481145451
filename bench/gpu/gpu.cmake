# GPU benchmark helper: gpu_dump (a stand-in agent that prints symbolized GPU samples as JSON).
# The CUDA workload itself is built by run_gpu_bench.sh with nvcc on the GPU machine.
add_executable(gpu_dump ${CMAKE_CURRENT_LIST_DIR}/gpu_dump.c)
target_compile_options(gpu_dump PRIVATE ${EMBER_WARNINGS})
target_link_libraries(gpu_dump PRIVATE ember_gpu ember_cli)
set_target_properties(gpu_dump PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
