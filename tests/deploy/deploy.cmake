# Deployment tests (deploy/, grafana/, docs/deploy.md). No Docker engine is needed or used.
# They run under Debian's python3, which has python3-yaml and docker-compose's modules
# (`make deps` installs docker-compose). A missing tool makes a test skip (exit 77) with a reason.
find_program(EMBER_DEPLOY_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EMBER_DEPLOY_PYTHON)
  find_program(EMBER_DEPLOY_PYTHON python3 REQUIRED)
endif()
set(EMBER_DEPLOY_TESTS ${CMAKE_CURRENT_LIST_DIR})

add_test(NAME deploy.compose
  COMMAND ${EMBER_DEPLOY_PYTHON} ${EMBER_DEPLOY_TESTS}/test_compose.py --source-dir ${CMAKE_SOURCE_DIR})
# Checks against the built agent: `ember help profiles` is the list of profile types.
add_test(NAME deploy.consistency
  COMMAND ${EMBER_DEPLOY_PYTHON} ${EMBER_DEPLOY_TESTS}/test_consistency.py
          --source-dir ${CMAKE_SOURCE_DIR} --ember ${CMAKE_BINARY_DIR}/ember)
add_test(NAME deploy.dockerfile
  COMMAND ${EMBER_DEPLOY_PYTHON} ${EMBER_DEPLOY_TESTS}/test_dockerfile.py --source-dir ${CMAKE_SOURCE_DIR})
set_tests_properties(deploy.compose deploy.consistency deploy.dockerfile PROPERTIES
  SKIP_RETURN_CODE 77 LABELS deploy ENVIRONMENT "${EMBER_TEST_ENV}")
