/* mopt/mopt.h - umbrella header of the mopt model optimization library. */
#ifndef MOPT_H
#define MOPT_H

#define MOPT_VERSION_MAJOR 0
#define MOPT_VERSION_MINOR 1
#define MOPT_VERSION_PATCH 0
#define MOPT_VERSION_STRING "0.1.0"

#include "mopt/status.h"
#include "mopt/graph.h"
#include "mopt/tflite.h"
#include "mopt/runtime.h"
#include "mopt/data.h"
#include "mopt/util.h"
#include "mopt/qmath.h"
#include "mopt/quantize.h"
#include "mopt/train.h"
#include "mopt/sparsity.h"
#include "mopt/cluster.h"
#include "mopt/report.h"

#endif
