#include <stdio.h>

int main(void) {
    puts("hello from a static binary on scratch");
    return 0;
}
