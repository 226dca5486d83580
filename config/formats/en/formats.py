"""How the admin shows dates and times: to the second, with the time zone (one place for every page).

Django's English locale formats override the settings' ``DATETIME_FORMAT``, so
``FORMAT_MODULE_PATH`` points here. Every datetime the admin renders (list
columns, read-only fields, history) goes through these.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
