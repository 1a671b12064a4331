# Sourced (from the repository root) by the GPU scripts. libcjson, cmocka and libmicrohttpd are the
# system's, or the copies carried in .gpu-deps/ (the GPU image lacks them): with that
# folder present, LD_LIBRARY_PATH finds the copies and the array gpu_cmake_deps holds the
# CMake options that point the build at each copy the system does not have.
gpu_cmake_deps=()
if [ -d .gpu-deps ]; then
  export LD_LIBRARY_PATH="$PWD/.gpu-deps/lib:${LD_LIBRARY_PATH:-}"
  export CPATH="$PWD/.gpu-deps/include${CPATH:+:$CPATH}" # headers for every build dir
  ls /usr/lib/x86_64-linux-gnu/libcjson.so* >/dev/null 2>&1 ||
    gpu_cmake_deps+=(-DCJSON_LIB="$PWD/.gpu-deps/lib/libcjson.so" -DCJSON_INC="$PWD/.gpu-deps/include")
  ls /usr/lib/x86_64-linux-gnu/libmicrohttpd.so* >/dev/null 2>&1 || [ ! -e .gpu-deps/lib/libmicrohttpd.so ] ||
    gpu_cmake_deps+=(-DMHD_LIB="$PWD/.gpu-deps/lib/libmicrohttpd.so")
  ls /usr/lib/x86_64-linux-gnu/libcmocka.so* >/dev/null 2>&1 ||
    gpu_cmake_deps+=(-DCMOCKA_LIB="$PWD/.gpu-deps/lib/libcmocka.so")
fi
