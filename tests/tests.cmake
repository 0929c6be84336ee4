# Test layout:
#   tests/unit/test_*.c   cmocka programs linked against the library (white-box and C API tests)
#   tests/test_*.py       Python 3 scripts (Debian's python3 with numpy/sentencepiece) driving build/llamac
#   tests/test_*.sh       shell scripts driving build/llamac
# Every test runs from the repository root with LLAMAC=<path of the CLI> and LLAMAC_SHARED=<../shared>.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(LLAMAC_SHARED_DIR "${CMAKE_SOURCE_DIR}/../shared" CACHE PATH "shared test data")
set(LLAMAC_PYTHON "/usr/bin/python3" CACHE FILEPATH "python with numpy")
# LLAMAC_CACHE_DIR: packed-weights caches (src/model/pack_cache.h) go to the build tree, not ~/.cache.
set(LLAMAC_TEST_ENV "LLAMAC=$<TARGET_FILE:llamac_cli>;LLAMAC_SHARED=${LLAMAC_SHARED_DIR};LLAMAC_TMP=${CMAKE_BINARY_DIR}/testtmp;LLAMAC_CACHE_DIR=${CMAKE_BINARY_DIR}/testtmp/pack-cache")

file(GLOB LLAMAC_UNIT_TESTS CONFIGURE_DEPENDS tests/unit/test_*.c)
foreach(src ${LLAMAC_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE src)
  target_link_libraries(${name} PRIVATE llamac PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${LLAMAC_TEST_ENV}")
endforeach()

file(GLOB LLAMAC_PY_TESTS CONFIGURE_DEPENDS tests/test_*.py)
foreach(src ${LLAMAC_PY_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME py_${name} COMMAND ${LLAMAC_PYTHON} ${src} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(py_${name} PROPERTIES ENVIRONMENT "${LLAMAC_TEST_ENV}")
endforeach()

file(GLOB LLAMAC_SH_TESTS CONFIGURE_DEPENDS tests/test_*.sh)
foreach(src ${LLAMAC_SH_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME sh_${name} COMMAND bash ${src} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(sh_${name} PROPERTIES ENVIRONMENT "${LLAMAC_TEST_ENV}")
endforeach()

# The Python package (python/llamac) over libllamac.so, with Debian's pytest. Under the sanitizers the
# library's runtime comes from a preload (python itself is not instrumented) and leak detection is off
# (CPython keeps its own objects at exit); the package's leak test measures the RSS instead.
set(LLAMAC_PY_PKG_ENV "${LLAMAC_TEST_ENV};PYTHONPATH=${CMAKE_SOURCE_DIR}/python;LLAMAC_LIB=$<TARGET_FILE:llamac_shared>;PYTHONDONTWRITEBYTECODE=1")
if(LLAMAC_SANITIZE)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libclang_rt.asan-x86_64.so
                  OUTPUT_VARIABLE LLAMAC_ASAN_RT OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND LLAMAC_PY_PKG_ENV "LD_PRELOAD=${LLAMAC_ASAN_RT}" "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
endif()
add_test(NAME python_package COMMAND ${LLAMAC_PYTHON} -m pytest -q -p no:cacheprovider python/tests
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(python_package PROPERTIES ENVIRONMENT "${LLAMAC_PY_PKG_ENV}")

# The end-to-end references again with the AVX2 table forced (LLAMAC_ISA=avx2): on an AVX-512 machine
# this holds AVX2-only CPUs' kernels, packed matrices included, to the same references. Own LLAMAC_TMP,
# so they can run beside the default runs.
foreach(name test_forward_reference test_golden_generate test_bench test_perplexity test_quantize)
  add_test(NAME py_${name}_avx2 COMMAND ${LLAMAC_PYTHON} tests/${name}.py WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(py_${name}_avx2 PROPERTIES ENVIRONMENT
    "LLAMAC=$<TARGET_FILE:llamac_cli>;LLAMAC_SHARED=${LLAMAC_SHARED_DIR};LLAMAC_TMP=${CMAKE_BINARY_DIR}/testtmp-avx2;LLAMAC_CACHE_DIR=${CMAKE_BINARY_DIR}/testtmp-avx2/pack-cache;LLAMAC_ISA=avx2")
endforeach()
add_test(NAME test_packed_avx2 COMMAND test_packed WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(test_packed_avx2 PROPERTIES ENVIRONMENT "${LLAMAC_TEST_ENV};LLAMAC_ISA=avx2")
