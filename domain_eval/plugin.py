# plugin lands with issue 6
