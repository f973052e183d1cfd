// Debian's libopenblas-dev installs cblas.h (with openblas_set_num_threads) under the multiarch include path.
#include <cblas.h>
