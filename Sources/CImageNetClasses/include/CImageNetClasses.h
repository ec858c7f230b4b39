// The ImageNet-1k class list, compiled in from Models/imagenet-classes.tsv.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/// Models/imagenet-classes.tsv verbatim (index, synset, name; a header line first), NUL-terminated.
const char* octet_imagenet_classes_tsv(void);

#ifdef __cplusplus
}
#endif
