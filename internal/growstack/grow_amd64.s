#include "textflag.h"

// func grow()
// The frame size is Size (growstack.go); TestAsmFrameIsSize checks it.
TEXT ·grow(SB), 0, $32768-0
	RET
