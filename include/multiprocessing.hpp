// multiprocessing for C++: Python's multiprocessing as a header-only C++20 library.
// The umbrella header, Python's `import multiprocessing`:
//     #include <multiprocessing.hpp>
//     namespace mp = multiprocessing;
#pragma once

#include "multiprocessing/connection.hpp"
#include "multiprocessing/context.hpp"
#include "multiprocessing/errors.hpp"
#include "multiprocessing/futures.hpp"
#include "multiprocessing/managers.hpp"
#include "multiprocessing/pool.hpp"
#include "multiprocessing/process.hpp"
#include "multiprocessing/progress.hpp"
#include "multiprocessing/queues.hpp"
#include "multiprocessing/serialization.hpp"
#include "multiprocessing/shared_memory.hpp"
#include "multiprocessing/sharedctypes.hpp"
#include "multiprocessing/synchronize.hpp"
