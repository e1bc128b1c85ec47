"""Infix tokens to reverse Polish notation (QuixBugs `shunting_yard`: operators never reach the stack)."""

PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def shunting_yard(tokens: list[int | str]) -> list[int | str]:
    rpn: list[int | str] = []
    opstack: list[str] = []
    for token in tokens:
        if isinstance(token, int):
            rpn.append(token)
        else:
            while opstack and PRECEDENCE[token] <= PRECEDENCE[opstack[-1]]:
                rpn.append(opstack.pop())
            opstack.append(token)
    while opstack:
        rpn.append(opstack.pop())
    return rpn
