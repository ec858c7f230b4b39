// Embeds Models/imagenet-classes.tsv at build time with #embed (C23; clang 19 and later, which every
// Swift 6.1+ toolchain ships), so the TSV is the one copy of the list: no generated source file, and
// no resource bundle, which a copied `octet` binary or a library user's executable could lose.
// Clang's dependency output names the TSV, so editing it rebuilds this file.
#include "CImageNetClasses.h"

#ifndef __has_embed
#error "CImageNetClasses needs a C compiler with #embed (clang 19 or later)"
#endif

#pragma clang diagnostic ignored "-Wc23-extensions"

static const char tsv[] = {
#embed "../../Models/imagenet-classes.tsv"
    , 0};

const char* octet_imagenet_classes_tsv(void) { return tsv; }
