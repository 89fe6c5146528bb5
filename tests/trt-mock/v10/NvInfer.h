/* Mock of TensorRT's NvInfer.h: the runtime part only (tests/trt-mock/README.md). */
#ifndef NV_INFER_H
#define NV_INFER_H
#include "NvInferRuntime.h"
#endif
