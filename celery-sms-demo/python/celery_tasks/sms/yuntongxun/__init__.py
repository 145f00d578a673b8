"""Stand-in for the blog's 容联云通讯 (yuntongxun) SMS SDK; see ``sms.py``."""
