// CImageData: Tessera's image pipeline in C, apart from the compute kernels so that whoever embeds
// the engine does not link the image libraries.
//   ck_imageio.h  gzip (zlib), PNG (libpng) and JPEG (libjpeg-turbo) decoding, PNG encoding; whole files
//                 in memory, treated as hostile, every failure a negative CK_IO_* code.
//   ck_augment.h  crop + resize as PIL, flip, normalize; color jitter, grayscale, blur, solarize as
//                 torchvision's tensor ops; a batch at a time, images in parallel (OpenMP).
#pragma once
#include "ck_imageio.h"
#include "ck_augment.h"
