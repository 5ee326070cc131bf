"""Keeps link OTPs out of access logs: the Link page's URL carries one (``…/start?otp=NNNNNN``), and so
does Sage's one-time ``authorizationId`` on its way back (``/sage/authorized?state=…``)."""

import logging
import re

_OTP = re.compile(r"((?:otp|state)=)[^&\s\"]+")
ACCESS_LOGGER = "uvicorn.access"


class RedactOtp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_OTP.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _OTP.sub(r"\1***", record.msg)
        return True


def redact_otps_in_access_log() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactOtp) for f in logger.filters):
        logger.addFilter(RedactOtp())
