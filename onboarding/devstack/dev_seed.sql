-- Demo data for the dev stack (`make up`) only; never applied by the migrations.
-- Re-running it changes nothing.

INSERT INTO organisations (business_registration_number, corporate_registration_number,
                           legal_name, representative, contact_emails) VALUES
    ('1348672683', '1101110062432', 'Korea Quotes Co., Ltd.', 'Lee Jiwon', '{quotes@member.example.com}'),
    ('2208162517', '1301110006246', 'Hanbit Bank Co., Ltd.', 'Park Seoyeon', '{openapi@hanbit-bank.example.com}')
ON CONFLICT DO NOTHING;

INSERT INTO api_catalogue (api_id, name, category, is_market_data,
                           provider_business_registration_number) VALUES
    ('stock-quotes', 'Stock quotes (real time)', 'market-data', true, '1348672683'),
    ('index-values', 'Index values', 'market-data', true, '1348672683'),
    ('account-balance', 'Securities account balance', 'accounts', false, '2208162517'),
    ('order-status', 'Order status', 'trading', false, '2208162517')
ON CONFLICT DO NOTHING;

-- The operator's staff. Everyone's staff id is their e-mail address.
INSERT INTO staff_roles (staff_id, role) VALUES
    ('reviewer@operator.example.com', 'pre_verification_reviewer'),
    ('sales@operator.example.com', 'market_data_sales'),
    ('platform@operator.example.com', 'platform_team'),
    ('approver@operator.example.com', 'final_approver'),
    ('manager@operator.example.com', 'operations_manager')
ON CONFLICT DO NOTHING;
