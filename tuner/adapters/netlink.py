"""The one module that imports pyroute2. Its types never leave this file.

Sections are owned by different parts of tuner and edited separately:
``# --- observe: ...`` (sock_diag, for tuner.observe) and ``
