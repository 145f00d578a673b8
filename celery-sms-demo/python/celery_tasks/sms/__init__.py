"""The ``sms`` package: the blog's SMS task (``tasks.py``) and its SDK (``yuntongxun/``)."""
